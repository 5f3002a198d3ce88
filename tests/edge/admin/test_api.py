from __future__ import annotations

import json

import httpx
import pytest

from edge.admin.api import create_api
from edge.registry.store import Registry
from edge.routing.asgi import call_asgi
from shared.crypto import b64encode, mint_secret
from shared.errors import BurrowError
from shared.events import RequestHead

ZONE = "example.test"
EDGE_INFO = {"zone": ZONE, "tunnel_endpoint": "127.0.0.1:7844"}


@pytest.fixture
def changes() -> list[None]:
    return []


@pytest.fixture
def app(registry: Registry, changes: list[None]):

    async def on_change():
        changes.append(None)

    return create_api(registry, lambda: dict(EDGE_INFO), on_change)


@pytest.fixture
def token(registry: Registry) -> str:
    return registry.create_account("alice")[1]


@pytest.fixture
async def client(app, token: str):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="https://edge.example.test",
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        yield c


async def test_account_and_edge(client: httpx.AsyncClient, registry: Registry) -> None:
    r = await client.get("/api/v1/account")
    assert r.status_code == 200
    assert r.json()["name"] == "alice"
    assert r.json()["id"] == registry.list_accounts()[0].id
    r = await client.get("/api/v1/edge")
    assert r.json() == EDGE_INFO


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}],
    ids=["missing", "unknown", "wrong-scheme", "empty"],
)
async def test_unauthenticated_is_401(app, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="https://edge.example.test"
    ) as anon:
        for method, path in [
            ("GET", "/api/v1/account"),
            ("GET", "/api/v1/edge"),
            ("GET", "/api/v1/tunnels"),
            ("POST", "/api/v1/tunnels"),
            ("GET", "/api/v1/tunnels/web"),
            ("PUT", "/api/v1/routes/dns"),
        ]:
            r = await anon.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path)
            assert r.json()["error"]


async def test_tunnel_lifecycle(client: httpx.AsyncClient, changes: list[None]) -> None:
    r = await client.post("/api/v1/tunnels", json={"name": "web", "secret": b64encode(mint_secret())})
    assert r.status_code == 201
    tunnel = r.json()
    assert tunnel["name"] == "web"
    assert tunnel["endpoint"] == "127.0.0.1:7844"
    assert set(tunnel) == {"id", "name", "account_id", "created_at", "endpoint"}
    assert len(changes) == 1

    r = await client.post("/api/v1/tunnels", json={"name": "web", "secret": b64encode(mint_secret())})
    assert r.status_code == 409
    assert r.json() == {"error": "tunnel 'web' already exists"}

    listed = (await client.get("/api/v1/tunnels")).json()["tunnels"]
    assert [t["id"] for t in listed] == [tunnel["id"]]
    for key in ("web", tunnel["id"]):
        r = await client.get(f"/api/v1/tunnels/{key}")
        assert r.status_code == 200
        assert r.json()["id"] == tunnel["id"]
    r = await client.get("/api/v1/tunnels/nope")
    assert r.status_code == 404
    assert "nope" in r.json()["error"]

    r = await client.put("/api/v1/routes/dns", json={"tunnel": "web", "hostname": "app.example.test"})
    assert r.status_code == 200
    assert r.json() == {
        "hostname": "app.example.test",
        "type": "CNAME",
        "target": f"{tunnel['id']}.tunnels.{ZONE}",
        "tunnel_id": tunnel["id"],
    }
    assert len(changes) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b"{}", "missing field 'name'"),
        (json.dumps({"name": "web"}).encode(), "missing field 'secret'"),
        (json.dumps({"name": 5, "secret": "x"}).encode(), "field 'name' must be a str"),
        (json.dumps({"name": "web", "secret": "!!!"}).encode(), "base64"),
        (json.dumps({"name": "web", "secret": b64encode(b"short")}).encode(), "32 bytes"),
        (json.dumps({"name": "Bad Name", "secret": b64encode(mint_secret())}).encode(), "invalid tunnel name"),
    ],
    ids=["bad-json", "not-object", "no-name", "no-secret", "name-type", "bad-b64", "short", "bad-name"],
)
async def test_create_tunnel_bad_request(client: httpx.AsyncClient, content: bytes, message: str) -> None:
    r = await client.post("/api/v1/tunnels", content=content)
    assert r.status_code == 400
    assert message in r.json()["error"]


async def test_route_dns_errors(app, client: httpx.AsyncClient, registry: Registry) -> None:
    await client.post("/api/v1/tunnels", json={"name": "web", "secret": b64encode(mint_secret())})
    r = await client.put("/api/v1/routes/dns", json={"tunnel": "web", "hostname": "app.other.test"})
    assert r.status_code == 400
    assert r.json()["error"] == "hostname 'app.other.test' is outside the zone 'example.test'"
    r = await client.put("/api/v1/routes/dns", json={"tunnel": "nope", "hostname": "a.example.test"})
    assert r.status_code == 404
    r = await client.put("/api/v1/routes/dns", json={"tunnel": "web", "hostname": "a.example.test", "overwrite": "yes"})
    assert r.status_code == 400

    # Another account cannot take alice's hostname.
    await client.put("/api/v1/routes/dns", json={"tunnel": "web", "hostname": "a.example.test"})
    bob, bob_token = registry.create_account("bob")
    registry.create_tunnel(bob.id, "web", mint_secret())
    r = await client.put(
        "/api/v1/routes/dns",
        json={"tunnel": "web", "hostname": "a.example.test", "overwrite": True},
        headers={"Authorization": f"Bearer {bob_token}"},
    )
    assert r.status_code == 409
    assert "belongs to another account" in r.json()["error"]


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nothing")
    assert r.status_code == 404
    assert "error" in r.json()


async def test_call_asgi_bridge(app, token: str) -> None:
    auth = (b"authorization", f"Bearer {token}".encode())
    body = json.dumps({"name": "web", "secret": b64encode(mint_secret())}).encode()
    head = RequestHead(
        method=b"POST",
        target=b"/api/v1/tunnels?x=1",
        authority=b"edge.example.test",
        headers=(auth, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())),
        has_body=True,
    )
    client, server = ("127.0.0.1", 50000), ("127.0.0.1", 443)
    response, data = await call_asgi(app, head, body, client, server)
    assert response.status == 201
    assert response.header(b"content-type") == b"application/json"
    assert json.loads(data)["name"] == "web"

    head = RequestHead(method=b"GET", target=b"/api/v1/tunnels/w%65b", authority=b"edge.example.test", headers=(auth,))
    response, data = await call_asgi(app, head, b"", client, server)
    assert response.status == 200
    assert json.loads(data)["name"] == "web"

    head = RequestHead(method=b"GET", target=b"/api/v1/account", authority=b"edge.example.test")
    response, data = await call_asgi(app, head, b"", client, server)
    assert response.status == 401
    assert json.loads(data) == {"error": "missing bearer token"}


async def test_call_asgi_refuses_huge_response() -> None:
    async def huge(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(2):
            await send({"type": "http.response.body", "body": b"x" * 600_000, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    head = RequestHead(method=b"GET", target=b"/", authority=b"edge.example.test")
    with pytest.raises(BurrowError, match="exceeds"):
        await call_asgi(huge, head, b"", ("127.0.0.1", 1), ("127.0.0.1", 2))
