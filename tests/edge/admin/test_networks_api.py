"""`/api/v1/routes/ip` and `/api/v1/access/networks` (issue 17): per-account, clear errors."""

from __future__ import annotations

import pytest

from edge.admin.api import create_api
from edge.registry.store import Registry
from shared.crypto import b64encode, mint_secret
from tests.edge.admin.test_api_management import EDGE_INFO, client_for


@pytest.fixture
async def clients(registry: Registry):
    async def on_change():
        pass

    app = create_api(registry, lambda: dict(EDGE_INFO), on_change)
    async with client_for(app, registry.create_account("alice")[1]) as alice, client_for(app, registry.create_account("bob")[1]) as bob:
        for client in (alice, bob):
            r = await client.post("/tunnels", json={"name": "office", "secret": b64encode(mint_secret())})
            assert r.status_code == 201
        yield alice, bob


async def test_routes_are_per_account(clients) -> None:
    alice, bob = clients
    r = await alice.post("/routes/ip", json={"network": "198.18.5.0/24", "tunnel": "office", "comment": "LAN"})
    assert r.status_code == 201 and r.json()["network"] == "198.18.5.0/24" and r.json()["replaced"] == []
    assert (await bob.get("/routes/ip")).json() == {"routes": []}
    assert (await bob.delete("/routes/ip", params={"network": "198.18.5.0/24"})).status_code == 404
    r = await alice.post("/routes/ip", json={"network": "198.18.5.0/25", "tunnel": "office"})
    assert r.status_code == 409 and "overlaps" in r.json()["error"]
    r = await alice.post("/routes/ip", json={"network": "198.18.5.0/25", "tunnel": "office", "overwrite": True})
    assert r.status_code == 201 and r.json()["replaced"] == ["198.18.5.0/24"]
    assert (await alice.delete("/routes/ip", params={"network": "198.18.5.0/25"})).json() == {"network": "198.18.5.0/25", "deleted": True}


async def test_bad_requests_get_400_with_a_reason(clients) -> None:
    alice, _ = clients
    for body in ({"network": "198.18.5.0/24"}, {"network": 5, "tunnel": "office"}, {"network": "nope", "tunnel": "office"}):
        r = await alice.post("/routes/ip", json=body)
        assert r.status_code == 400 and r.json()["error"], body
    assert (await alice.delete("/routes/ip")).status_code == 400
    r = await alice.put("/access/networks", params={"network": "198.18.5.0/24"}, json={"allow_tokens": "ci"})
    assert r.status_code == 400


async def test_network_policies(clients) -> None:
    alice, bob = clients
    await alice.post("/routes/ip", json={"network": "198.18.5.0/24", "tunnel": "office"})
    await alice.post("/access/tokens", json={"name": "ci"})
    r = await alice.put("/access/networks", params={"network": "198.18.5.10"}, json={"allow_tokens": ["ci", "ci"]})
    assert r.json() == {"network": "198.18.5.10/32", "allow_tokens": ["ci"]}
    assert (await alice.get("/access/networks")).json() == {"policies": {"198.18.5.10/32": ["ci"]}}
    assert (await bob.put("/access/networks", params={"network": "198.18.5.10"}, json={})).status_code == 404
    assert (await bob.get("/access/networks")).json() == {"policies": {}}
    assert (await alice.delete("/access/networks", params={"network": "198.18.5.10/32"})).status_code == 200
