"""`/api/v1/access/…` over ASGI: authentication, per-account scoping, and the public JWKS."""

from __future__ import annotations

import httpx
import pytest

from edge.admin.api import create_api
from edge.registry.store import Registry
from shared.crypto import mint_secret

ZONE = "example.test"


@pytest.fixture
def changes() -> list[None]:
    return []


@pytest.fixture
def client(registry: Registry, changes: list[None]):
    async def on_change():
        changes.append(None)

    app = create_api(registry, lambda: {"zone": ZONE, "tunnel_endpoint": "127.0.0.1:7844"}, on_change)

    def make(token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=f"https://{ZONE}", headers=headers)

    return make


def account(registry: Registry, name: str) -> str:
    acct, token = registry.create_account(name)
    tunnel = registry.create_tunnel(acct.id, name, mint_secret())
    registry.route_dns(acct.id, tunnel.id, f"{name}.{ZONE}", ZONE)
    return token


async def test_every_access_route_needs_a_token_but_the_jwks(client, registry: Registry):
    registry.publish_access_key("k1", {"kid": "k1", "kty": "EC"})
    async with client() as anon:
        for method, path in [
            ("GET", "/api/v1/access/tokens"), ("POST", "/api/v1/access/tokens"), ("DELETE", "/api/v1/access/tokens/ci"),
            ("GET", f"/api/v1/access/policies/a.{ZONE}"), ("PUT", f"/api/v1/access/policies/a.{ZONE}"),
            ("DELETE", f"/api/v1/access/policies/a.{ZONE}"), ("GET", "/api/v1/access/users"),
            ("POST", "/api/v1/access/users"), ("DELETE", "/api/v1/access/users/x@example.test"),
        ]:
            assert (await anon.request(method, path)).status_code == 401, (method, path)
        for path in ("/api/v1/access/jwks", "/cdn-cgi/access/certs"):
            r = await anon.get(path)
            assert r.status_code == 200 and r.json() == {"keys": [{"kid": "k1", "kty": "EC"}]}


async def test_accounts_see_and_change_only_their_own(client, registry: Registry, changes: list[None]):
    a, b = account(registry, "a"), account(registry, "b")
    async with client(a) as api_a, client(b) as api_b:
        r = await api_a.post("/api/v1/access/tokens", json={"name": "ci"})
        assert r.status_code == 201 and r.json()["client_secret"] and changes
        assert (await api_b.get("/api/v1/access/tokens")).json() == {"tokens": []}
        assert (await api_b.delete("/api/v1/access/tokens/ci")).status_code == 404
        r = await api_a.put(f"/api/v1/access/policies/a.{ZONE}", json={"allow_tokens": ["ci"], "rate_limit": "5/1m"})
        assert r.json() == {
            "hostname": f"a.{ZONE}", "access_required": True,
            "policy": {"allow_tokens": ["ci"], "allow_emails": [], "allow_ips": [], "deny_ips": [], "rate_limit": "5/60s", "max_body": None},
        }
        for method in ("GET", "PUT", "DELETE"):
            r = await api_b.request(method, f"/api/v1/access/policies/a.{ZONE}", json={})
            assert r.status_code == 404 and "not routed by this account" in r.json()["error"], method
        r = await api_a.put(f"/api/v1/access/policies/a.{ZONE}", json={"deny_ips": ["nope"]})
        assert r.status_code == 400 and "invalid CIDR 'nope'" in r.json()["error"]
        r = await api_a.post("/api/v1/access/users", json={"email": "ann@example.test", "password": "short"})
        assert r.status_code == 400 and "8-1024 characters" in r.json()["error"]
        r = await api_a.post("/api/v1/access/users", json={"email": "Ann@Example.test", "password": "long enough"})
        assert r.json() == {"email": "ann@example.test"}
        assert (await api_b.get("/api/v1/access/users")).json() == {"users": []}
        assert (await api_b.delete("/api/v1/access/users/ann@example.test")).status_code == 404
        stored = registry.access_snapshot().users
        assert list(stored) == [(registry.authenticate(a).id, "ann@example.test")]
        assert "long enough" not in next(iter(stored.values()))
