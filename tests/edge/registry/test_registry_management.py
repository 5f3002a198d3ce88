"""Registry for issue 3: hostname rules, delete, routes, connection rows, TXT records, ownership."""

from __future__ import annotations

import pytest

from edge.registry.models import Connection
from edge.registry.store import Registry
from shared.crypto import mint_secret
from shared.errors import AuthError, ConfigError, ConflictError, NotFoundError

ZONE = "example.test"
ZONES = [ZONE, "sub.example.test"]


@pytest.fixture
def alice(registry: Registry):
    account, _ = registry.create_account("alice")
    return account


@pytest.fixture
def bob(registry: Registry):
    account, _ = registry.create_account("bob")
    return account


def conn(tunnel_id: str, index: int, edge: str = "edge-1") -> Connection:
    return Connection(f"c-{edge}-{index}", tunnel_id, "connector-1", index, edge, "burrow/0.1", "127.0.0.1:5000", "2026-01-01T00:00:00+00:00")


ACCEPTED = [
    ("App.Example.Test.", "app.example.test"),
    ("bücher.example.test", "xn--bcher-kva.example.test"),
    ("ÄPFEL.example.test", "xn--pfel-koa.example.test"),
    ("*.dev.example.test", "*.dev.example.test"),
    ("a-b.c1.example.test", "a-b.c1.example.test"),
    ("x" * 63 + ".example.test", "x" * 63 + ".example.test"),
]


@pytest.mark.parametrize(("hostname", "stored"), ACCEPTED, ids=["case-dot", "idn", "idn-upper", "wildcard", "dashes", "label-63"])
def test_valid_hostnames_are_normalized(registry: Registry, alice, hostname: str, stored: str) -> None:
    tunnel = registry.create_tunnel(alice.id, "web", mint_secret())
    record = registry.route_dns(alice.id, tunnel.id, hostname, ZONES)
    assert record.hostname == stored
    assert registry.zones(ZONES).tunnel_for(stored.replace("*", "any")) == tunnel.id


REFUSED = [
    ("", "empty"),
    ("a..example.test", "empty label"),
    ("-a.example.test", "must not start or end with '-'"),
    ("a-.example.test", "must not start or end with '-'"),
    ("a_b.example.test", "may only hold a-z, 0-9 and '-'"),
    ("a b.example.test", "may only hold"),
    ("x" * 64 + ".example.test", "longer than 63"),
    (".".join(["abcdefghi"] * 25) + ".example.test", "longer than 253"),
    ("a*.example.test", "only as the whole first label"),
    ("x.*.example.test", "only as the whole first label"),
    ("*", "a wildcard needs a name below a zone"),
    ("app.example.org", "outside the zones 'example.test', 'sub.example.test'"),
    ("example.test", "zone apex"),
    ("sub.example.test", "zone apex"),
    ("tunnels.example.test", "keeps for tunnel targets"),
    ("x.tunnels.example.test", "keeps for tunnel targets"),
    ("ns1.example.test", "the edge's own name server"),
    ("*.tunnels.sub.example.test", "keeps for tunnel targets"),
    ("xn--a.example.test\udcff", "not a valid internationalized name"),
]


@pytest.mark.parametrize(("hostname", "message"), REFUSED, ids=[
    "empty", "empty-label", "dash-first", "dash-last", "underscore", "space", "label-64", "total-254",
    "wildcard-in-label", "wildcard-not-first", "bare-wildcard", "outside", "apex", "apex-of-subzone",
    "tunnels-label", "under-tunnels", "name-server", "wildcard-under-tunnels", "bad-idn",
])
def test_invalid_hostnames_are_refused_with_a_clear_message(registry: Registry, alice, hostname: str, message: str) -> None:
    tunnel = registry.create_tunnel(alice.id, "web", mint_secret())
    with pytest.raises(ConfigError, match=__import__("re").escape(message)):
        registry.route_dns(alice.id, tunnel.id, hostname, ZONES)
    assert registry.routes(alice.id) == []


def test_tables_are_not_empty() -> None:
    assert ACCEPTED and REFUSED


def test_target_uses_the_longest_zone(registry: Registry, alice) -> None:
    tunnel = registry.create_tunnel(alice.id, "web", mint_secret())
    assert registry.route_dns(alice.id, tunnel.id, "a.sub.example.test", ZONES).target == f"{tunnel.id}.tunnels.sub.example.test"
    assert registry.route_dns(alice.id, tunnel.id, "a.example.test", ZONES).target == f"{tunnel.id}.tunnels.example.test"


def test_delete_tunnel_removes_routes_and_connections_and_rejects_its_secret(registry: Registry, alice, bob) -> None:
    secret = mint_secret()
    web = registry.create_tunnel(alice.id, "web", secret)
    registry.route_dns(alice.id, web.id, "app.example.test", ZONES)
    registry.add_connection(conn(web.id, 0))
    with pytest.raises(NotFoundError):
        registry.delete_tunnel(bob.id, "web")  # another account's: not found
    with pytest.raises(NotFoundError):
        registry.delete_tunnel(bob.id, web.id)
    assert registry.delete_tunnel(alice.id, "web") == web
    assert registry.routes(alice.id) == []
    assert registry.list_connections(web.id) == []
    with pytest.raises(AuthError, match="credentials rejected"):
        registry.verify_tunnel(web.id, secret)
    with pytest.raises(AuthError, match="credentials rejected"):
        registry.add_connection(conn(web.id, 1))
    assert web.id not in registry.zones(ZONES).zones[0].tunnel_ids
    with pytest.raises(NotFoundError):
        registry.get_tunnel(alice.id, web.id)
    with pytest.raises(NotFoundError):
        registry.delete_tunnel(alice.id, "web")
    row = registry._conn.execute("SELECT deleted_at, secret_hash FROM tunnels WHERE id = ?", (web.id,)).fetchone()
    assert row[0] and len(row[1]) == 64  # soft delete keeps the row and its hash
    again = registry.create_tunnel(alice.id, "web", mint_secret())  # the name is free again
    assert again.id != web.id


def test_remove_route_only_for_its_owner(registry: Registry, alice, bob) -> None:
    web = registry.create_tunnel(alice.id, "web", mint_secret())
    registry.route_dns(alice.id, web.id, "app.example.test", ZONES)
    with pytest.raises(NotFoundError, match="has no route"):
        registry.remove_route(bob.id, "app.example.test")
    with pytest.raises(NotFoundError):
        registry.remove_route(alice.id, "nope.example.test")
    with pytest.raises(NotFoundError):
        registry.remove_route(alice.id, "bad..name")
    assert registry.remove_route(alice.id, "APP.example.test.").hostname == "app.example.test"
    assert registry.zones(ZONES).tunnel_for("app.example.test") is None


def test_hostnames_belong_to_one_account_including_wildcards(registry: Registry, alice, bob) -> None:
    a = registry.create_tunnel(alice.id, "web", mint_secret())
    b = registry.create_tunnel(bob.id, "web", mint_secret())
    registry.route_dns(alice.id, a.id, "*.dev.example.test", ZONES)
    registry.route_dns(alice.id, a.id, "app.example.test", ZONES)
    for host in ("app.example.test", "x.dev.example.test", "y.x.dev.example.test", "*.x.dev.example.test"):
        with pytest.raises(ConflictError, match=f"hostname '{__import__('re').escape(host)}' belongs to another account"):
            registry.route_dns(bob.id, b.id, host, ZONES, overwrite=True)
    registry.route_dns(bob.id, b.id, "bob.other.example.test", ZONES)
    with pytest.raises(ConflictError, match="belongs to another account"):
        registry.route_dns(alice.id, a.id, "*.other.example.test", ZONES)  # would cover bob's name
    registry.route_dns(alice.id, a.id, "x.dev.example.test", ZONES)  # the owner may add names below it


def test_routes_and_connections_rows(registry: Registry, alice) -> None:
    web = registry.create_tunnel(alice.id, "web", mint_secret())
    api = registry.create_tunnel(alice.id, "api", mint_secret())
    registry.route_dns(alice.id, web.id, "b.example.test", ZONES)
    registry.route_dns(alice.id, web.id, "a.example.test", ZONES)
    assert [(r.hostname, r.tunnel_id) for r in registry.routes(alice.id)] == [("a.example.test", web.id), ("b.example.test", web.id)]

    for index in range(2):
        registry.add_connection(conn(web.id, index, "edge-now"))
    registry.add_connection(conn(web.id, 2, "edge-before"))
    registry.add_connection(conn(api.id, 0, "edge-before"))
    assert [c.conn_index for c in registry.list_connections(web.id)] == [0, 1, 2]
    assert registry.cleanup_connections("edge-now", web.id) == 1
    assert [c.edge_id for c in registry.list_connections(web.id)] == ["edge-now", "edge-now"]
    assert len(registry.list_connections(api.id)) == 1  # another tunnel's stale row stays
    assert registry.cleanup_connections("edge-now") == 1
    registry.remove_connection("c-edge-now-0")
    assert [c.id for c in registry.list_connections(web.id)] == ["c-edge-now-1"]


def test_txt_records_in_the_snapshot(registry: Registry, alice, bob) -> None:
    web = registry.create_tunnel(alice.id, "web", mint_secret())
    registry.route_dns(alice.id, web.id, "app.example.test", ZONES)
    host, values = registry.set_txt(alice.id, "_acme-challenge.App.example.test", ["tok-1", "tok-2"], ZONES)
    assert host == "_acme-challenge.app.example.test"
    registry.set_txt(alice.id, "sub.example.test", ["v=spf1 -all"], ZONES)  # apex TXT is fine
    zones = registry.zones(ZONES)
    assert zones.zones[0].txt == {"_acme-challenge.app.example.test": ("tok-1", "tok-2")}
    assert zones.zones[1].txt == {"sub.example.test": ("v=spf1 -all",)}
    with pytest.raises(ConflictError, match="belongs to another account"):
        registry.set_txt(bob.id, "_acme-challenge.app.example.test", ["x"], ZONES)
    with pytest.raises(ConflictError, match="has a CNAME record"):
        registry.set_txt(alice.id, "app.example.test", ["x"], ZONES)
    registry.set_txt(alice.id, "verify.example.test", ["x"], ZONES)
    with pytest.raises(ConflictError, match="has TXT records"):
        registry.route_dns(alice.id, web.id, "verify.example.test", ZONES)
    registry.set_txt(alice.id, "verify.example.test", [], ZONES)
    for bad in (["x" * 256], [""], ["\n"], "not-a-list", [1]):
        with pytest.raises(ConfigError):
            registry.set_txt(alice.id, "t.example.test", bad, ZONES)
    registry.set_txt(alice.id, "_acme-challenge.app.example.test", [], ZONES)
    assert registry.zones(ZONES).zones[0].txt == {}
