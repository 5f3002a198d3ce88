"""Admin API for issue 3: delete/force, connections, cleanup, route removal, isolation, OpenAPI."""

from __future__ import annotations

import httpx
import pytest

from edge.admin.api import create_api
from edge.registry.models import Connection
from edge.registry.store import Registry
from shared.crypto import b64encode, mint_secret

ZONE = "example.test"
EDGE_INFO = {"zone": ZONE, "zones": [ZONE], "tunnel_endpoint": "127.0.0.1:7844"}
EDGE_ID = "edge-now"


class FakeSessions:
    """Stands in for the router: live connection info per tunnel, and what `drop` was asked."""

    def __init__(self) -> None:
        self.live: dict[str, list[Connection]] = {}
        self.dropped: list[str] = []

    def connections(self, tunnel_id: str) -> list[Connection]:
        return list(self.live.get(tunnel_id, ()))

    def count(self, tunnel_id: str) -> int:
        return len(self.live.get(tunnel_id, ()))

    async def drop(self, tunnel_id: str, grace: float) -> int:
        self.dropped.append(tunnel_id)
        return len(self.live.pop(tunnel_id, ()))


def row(tunnel_id: str, index: int, edge: str = EDGE_ID) -> Connection:
    return Connection(f"{edge}-{index}", tunnel_id, "conn-a", index, edge, "burrow/0.1.0", "192.0.2.1:4000", "2026-01-01T00:00:00+00:00")


@pytest.fixture
def sessions() -> FakeSessions:
    return FakeSessions()


@pytest.fixture
def app(registry: Registry, sessions: FakeSessions):
    async def on_change():
        pass

    return create_api(registry, lambda: dict(EDGE_INFO), on_change, live=sessions, edge_id=EDGE_ID)


def client_for(app, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="https://edge.example.test/api/v1", headers=headers)


@pytest.fixture
async def alice(app, registry: Registry):
    async with client_for(app, registry.create_account("alice")[1]) as c:
        yield c


@pytest.fixture
async def bob(app, registry: Registry):
    async with client_for(app, registry.create_account("bob")[1]) as c:
        yield c


async def create(client: httpx.AsyncClient, name: str) -> dict:
    r = await client.post("/tunnels", json={"name": name, "secret": b64encode(mint_secret())})
    assert r.status_code == 201, r.text
    return r.json()


async def test_list_has_hostnames_and_live_counts(alice, sessions: FakeSessions) -> None:
    web = await create(alice, "web")
    await create(alice, "idle")
    await alice.put("/routes/dns", json={"tunnel": "web", "hostname": "b.example.test"})
    await alice.put("/routes/dns", json={"tunnel": "web", "hostname": "a.example.test"})
    sessions.live[web["id"]] = [row(web["id"], i) for i in range(4)]
    listed = {t["name"]: t for t in (await alice.get("/tunnels")).json()["tunnels"]}
    assert listed["web"]["hostnames"] == ["a.example.test", "b.example.test"]
    assert listed["web"]["connections"] == 4
    assert listed["idle"] | {} == listed["idle"] and listed["idle"]["hostnames"] == [] and listed["idle"]["connections"] == 0
    one = (await alice.get("/tunnels/web")).json()
    assert one["connections"] == 4 and one["hostnames"] == ["a.example.test", "b.example.test"]


async def test_delete_refused_while_live_unless_forced(alice, sessions: FakeSessions, registry: Registry) -> None:
    web = await create(alice, "web")
    await alice.put("/routes/dns", json={"tunnel": "web", "hostname": "app.example.test"})
    sessions.live[web["id"]] = [row(web["id"], i) for i in range(4)]
    r = await alice.delete("/tunnels/web")
    assert r.status_code == 409
    assert r.json() == {"error": "tunnel 'web' has 4 live connections; use --force"}
    assert (await alice.get("/tunnels/web")).status_code == 200
    assert (await alice.delete("/tunnels/web", params={"force": "maybe"})).status_code == 400
    r = await alice.delete(f"/tunnels/{web['id']}", params={"force": "true"})
    assert r.status_code == 200
    assert r.json()["closed_connections"] == 4 and r.json()["name"] == "web"
    assert sessions.dropped == [web["id"]]
    assert (await alice.get("/tunnels/web")).status_code == 404
    assert registry.zone(ZONE).tunnel_for("app.example.test") is None
    assert (await alice.delete("/tunnels/web")).status_code == 404


async def test_delete_without_connections_needs_no_force(alice, sessions: FakeSessions) -> None:
    web = await create(alice, "web")
    r = await alice.delete("/tunnels/web")
    assert r.status_code == 200 and r.json()["closed_connections"] == 0
    assert sessions.dropped == [web["id"]]  # dropped anyway: a connector may have raced in


async def test_connections_and_cleanup(alice, sessions: FakeSessions, registry: Registry) -> None:
    web = await create(alice, "web")
    live = [row(web["id"], i) for i in range(2)]
    for c in [*live, row(web["id"], 7, "edge-before")]:
        registry.add_connection(c)
    sessions.live[web["id"]] = live
    r = await alice.get("/tunnels/web/connections")
    assert r.status_code == 200
    body = r.json()
    assert body["stale"] == 1
    assert [c["conn_index"] for c in body["connections"]] == [0, 1]
    assert body["connections"][0] == {
        "id": f"{EDGE_ID}-0", "tunnel_id": web["id"], "connector_id": "conn-a", "conn_index": 0,
        "edge_id": EDGE_ID, "client_version": "burrow/0.1.0", "source": "192.0.2.1:4000",
        "connected_at": "2026-01-01T00:00:00+00:00",
    }
    r = await alice.post(f"/tunnels/{web['id']}/cleanup")
    assert r.json() == {"id": web["id"], "name": "web", "removed": 1}
    assert (await alice.get("/tunnels/web/connections")).json()["stale"] == 0
    assert len(registry.list_connections(web["id"])) == 2


async def test_remove_route(alice, bob) -> None:
    web = await create(alice, "web")
    await alice.put("/routes/dns", json={"tunnel": "web", "hostname": "*.dev.example.test"})
    assert (await bob.delete("/routes/dns/%2A.dev.example.test")).status_code == 404
    r = await alice.delete("/routes/dns/%2A.dev.example.test")
    assert r.status_code == 200
    assert r.json()["hostname"] == "*.dev.example.test" and r.json()["tunnel_id"] == web["id"]
    r = await alice.delete("/routes/dns/%2A.dev.example.test")
    assert r.status_code == 404
    assert r.json() == {"error": "hostname '*.dev.example.test' has no route"}


async def test_another_accounts_tunnel_is_not_found(alice, bob) -> None:
    web = await create(alice, "web")
    await alice.put("/routes/dns", json={"tunnel": "web", "hostname": "app.example.test"})
    for key in ("web", web["id"]):
        for method, path in [
            ("GET", f"/tunnels/{key}"),
            ("DELETE", f"/tunnels/{key}?force=true"),
            ("GET", f"/tunnels/{key}/connections"),
            ("GET", f"/tunnels/{key}/pools"),
            ("POST", f"/tunnels/{key}/cleanup"),
        ]:
            r = await bob.request(method, path)
            assert r.status_code == 404, (method, path)
            assert r.json() == {"error": f"tunnel '{key}' not found"}
        r = await bob.put("/routes/dns", json={"tunnel": key, "hostname": "bob.example.test"})
        assert r.status_code == 404
    assert (await bob.get("/tunnels")).json() == {"tunnels": []}
    await create(bob, "mine")
    r = await bob.put("/routes/dns", json={"tunnel": "mine", "hostname": "APP.example.test", "overwrite": True})
    assert r.status_code == 409
    assert r.json() == {"error": "hostname 'app.example.test' belongs to another account"}
    assert (await alice.get("/tunnels/web")).json()["hostnames"] == ["app.example.test"]


async def test_revoked_token_is_401_everywhere(app, alice, registry: Registry) -> None:
    await create(alice, "web")
    registry.revoke_account("alice")
    for method, path in [
        ("GET", "/account"), ("GET", "/tunnels"), ("POST", "/tunnels"), ("GET", "/tunnels/web"),
        ("DELETE", "/tunnels/web"), ("GET", "/tunnels/web/connections"), ("GET", "/tunnels/web/pools"),
        ("POST", "/tunnels/web/cleanup"),
        ("PUT", "/routes/dns"), ("DELETE", "/routes/dns/app.example.test"),
    ]:
        r = await alice.request(method, path)
        assert r.status_code == 401, (method, path)
        assert r.json() == {"error": "login token rejected"}


async def test_openapi_document_matches_the_routes(app) -> None:
    async with client_for(app, None) as anonymous:
        r = await anonymous.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = {(route.path, method) for route in app.routes for method in route.methods if method != "HEAD"}
    assert documented == served
    assert len(served) == 31  # 14 tunnel routes (2 of public ports, 1 of pools), 11 Access routes (edge/access_api.py), 6 network routes (networks_api.py)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("summary") and {"200", "201"} & set(op["responses"]), (path, method)
            if "{name_or_id}" in path:
                assert {"$ref": "#/components/parameters/NameOrId"} in op["parameters"]


async def test_unauthenticated_routes_other_than_the_document_are_401(app) -> None:
    async with client_for(app, None) as anonymous:
        for route in app.routes:
            for method in route.methods - {"HEAD"}:
                path = route.path.replace("{name_or_id}", "web").replace("{hostname}", "a.example.test")
                r = await anonymous.request(method, "https://edge.example.test" + path)
                expected = 200 if path.endswith(("openapi.json", "/jwks", "/cdn-cgi/access/certs")) else 401
                assert r.status_code == expected, (method, path)
