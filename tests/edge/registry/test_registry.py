from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from edge.registry.store import Registry
from shared.crypto import b64encode, mint_secret
from shared.errors import AuthError, ConfigError, ConflictError, NotFoundError

ZONE = "example.test"


def test_account_token_authenticates(registry: Registry) -> None:
    account, token = registry.create_account("alice")
    assert token.startswith("brw_")
    assert registry.authenticate(token) == account
    assert registry.list_accounts() == [account]
    with pytest.raises(AuthError, match="login token rejected"):
        registry.authenticate(token + "x")
    with pytest.raises(AuthError):
        registry.authenticate("")


def test_account_duplicate_and_invalid_names(registry: Registry) -> None:
    registry.create_account("alice")
    with pytest.raises(ConflictError, match="account 'alice' exists"):
        registry.create_account("alice")


@pytest.mark.parametrize(
    "name",
    ["", "Alice", "-lead", ".dot", "a b", "x" * 65, "é"],
    ids=["empty", "upper", "dash-first", "dot-first", "space", "too-long", "non-ascii"],
)
def test_invalid_names_refused(registry: Registry, name: str) -> None:
    with pytest.raises(ConfigError):
        registry.create_account(name)
    account, _ = registry.create_account("ok")
    with pytest.raises(ConfigError):
        registry.create_tunnel(account.id, name, mint_secret())


def test_revoked_account_loses_token_and_registration_but_not_running_tunnels(registry: Registry) -> None:
    account, token = registry.create_account("alice")
    secret = mint_secret()
    tunnel = registry.create_tunnel(account.id, "web", secret)
    registry.revoke_account("alice")
    with pytest.raises(AuthError):
        registry.authenticate(token)
    with pytest.raises(AuthError):
        registry.verify_tunnel(tunnel.id, secret)
    assert registry.list_accounts() == []
    # Sessions already connected keep routing: the tunnel stays in the snapshot.
    assert tunnel.id in registry.zone(ZONE).tunnel_ids
    with pytest.raises(NotFoundError):
        registry.revoke_account("alice")


def test_tunnel_create_get_list_and_duplicate(registry: Registry) -> None:
    alice, _ = registry.create_account("alice")
    bob, _ = registry.create_account("bob")
    web = registry.create_tunnel(alice.id, "web", mint_secret())
    assert registry.get_tunnel(alice.id, "web") == web
    assert registry.get_tunnel(alice.id, web.id) == web
    assert registry.list_tunnels(alice.id) == [web]
    with pytest.raises(ConflictError, match="tunnel 'web' already exists"):
        registry.create_tunnel(alice.id, "web", mint_secret())
    # Names are per account, and accounts see only their own tunnels.
    registry.create_tunnel(bob.id, "web", mint_secret())
    with pytest.raises(NotFoundError):
        registry.get_tunnel(bob.id, web.id)
    with pytest.raises(ConfigError, match="32 bytes"):
        registry.create_tunnel(alice.id, "short", b"abc")


def test_verify_tunnel(registry: Registry) -> None:
    account, _ = registry.create_account("alice")
    secret = mint_secret()
    tunnel = registry.create_tunnel(account.id, "web", secret)
    assert registry.verify_tunnel(tunnel.id, secret) == tunnel
    with pytest.raises(AuthError, match="credentials rejected"):
        registry.verify_tunnel(tunnel.id, mint_secret())
    with pytest.raises(AuthError, match="credentials rejected"):
        registry.verify_tunnel("no-such-tunnel", secret)


@pytest.mark.parametrize(
    "hostname",
    ["example.test", "app.other.test", "xexample.test", "tunnels.example.test",
     "abc.tunnels.example.test", "bad_label.example.test", "-x.example.test",
     "a..example.test", ""],
    ids=["apex", "other-zone", "suffix-trick", "tunnels", "under-tunnels",
         "underscore", "dash-label", "empty-label", "empty"],
)
def test_route_dns_refuses_hosts_outside_zone(registry: Registry, hostname: str) -> None:
    account, _ = registry.create_account("alice")
    tunnel = registry.create_tunnel(account.id, "web", mint_secret())
    with pytest.raises(ConfigError):
        registry.route_dns(account.id, tunnel.id, hostname, ZONE)


def test_route_dns_names_host_and_zone(registry: Registry) -> None:
    account, _ = registry.create_account("alice")
    tunnel = registry.create_tunnel(account.id, "web", mint_secret())
    with pytest.raises(ConfigError, match="hostname 'app.other.test' is outside the zone 'example.test'"):
        registry.route_dns(account.id, tunnel.id, "app.other.test", ZONE)


def test_route_dns_and_zone_snapshot(registry: Registry) -> None:
    account, _ = registry.create_account("alice")
    tunnel = registry.create_tunnel(account.id, "web", mint_secret())
    record = registry.route_dns(account.id, tunnel.id, "App.Example.Test.", ZONE)
    assert record.hostname == "app.example.test"
    assert record.type == "CNAME"
    assert record.target == f"{tunnel.id}.tunnels.{ZONE}"
    # Idempotent for the same target.
    assert registry.route_dns(account.id, tunnel.id, "app.example.test", ZONE) == record
    zone = registry.zone(ZONE)
    assert zone.records == {"app.example.test": record.target}
    assert zone.tunnel_ids == {tunnel.id}
    assert zone.tunnel_for("app.example.test") == tunnel.id


def test_route_dns_overwrite_and_ownership(registry: Registry) -> None:
    alice, _ = registry.create_account("alice")
    bob, _ = registry.create_account("bob")
    web = registry.create_tunnel(alice.id, "web", mint_secret())
    api = registry.create_tunnel(alice.id, "api", mint_secret())
    bobs = registry.create_tunnel(bob.id, "web", mint_secret())
    registry.route_dns(alice.id, web.id, "app.example.test", ZONE)
    with pytest.raises(ConflictError, match="belongs to another account"):
        registry.route_dns(bob.id, bobs.id, "app.example.test", ZONE, overwrite=True)
    with pytest.raises(ConflictError):
        registry.route_dns(alice.id, api.id, "app.example.test", ZONE)
    moved = registry.route_dns(alice.id, api.id, "app.example.test", ZONE, overwrite=True)
    assert registry.zone(ZONE).tunnel_for("app.example.test") == api.id == moved.tunnel_id
    # A tunnel of another account cannot be the target.
    with pytest.raises(NotFoundError):
        registry.route_dns(alice.id, bobs.id, "b.example.test", ZONE)


def test_no_plaintext_secrets_stored(registry: Registry, registry_target: Path | str, request) -> None:
    account, token = registry.create_account("alice")
    secret = mint_secret()
    registry.create_tunnel(account.id, "web", secret)
    registry.close()
    if isinstance(registry_target, Path):
        stored = b"".join(p.read_bytes() for p in registry_target.parent.glob("edge.db*"))
    else:  # every row, as pg_dump writes it
        stored = request.getfixturevalue("pg_server").dump(request.getfixturevalue("pg_database")).encode()
    assert account.id.encode() in stored  # the rows were read
    for needle in (token.encode(), secret, b64encode(secret).encode(), secret.hex().encode()):
        assert needle not in stored
    reopened = Registry.open(registry_target)
    try:
        assert reopened.authenticate(token) == account
    finally:
        reopened.close()


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_integrity_and_pragmas(registry: Registry, registry_target: Path) -> None:
    account, _ = registry.create_account("alice")
    registry.create_tunnel(account.id, "web", mint_secret())
    conn = sqlite3.connect(registry_target)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


def test_usable_from_threads(registry: Registry) -> None:
    account, _ = registry.create_account("alice")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                registry.create_tunnel(account.id, f"t{i}-{j}", mint_secret())
                registry.list_tunnels(account.id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(registry.list_tunnels(account.id)) == 40
