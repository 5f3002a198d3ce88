"""Private-network routes and network policies in the registry (issue 17)."""

from __future__ import annotations

import ipaddress

import pytest

from edge.access.private import Credential, Refusal, Route, decide
from edge.registry.store import Registry
from shared import private_flows as flows
from shared.crypto import mint_secret
from shared.errors import ConfigError, ConflictError, NotFoundError


@pytest.fixture
def accounts(registry: Registry):
    alice, _ = registry.create_account("alice")
    bob, _ = registry.create_account("bob")
    office = registry.create_tunnel(alice.id, "office", mint_secret())
    lab = registry.create_tunnel(alice.id, "lab", mint_secret())
    bobs = registry.create_tunnel(bob.id, "home", mint_secret())
    return alice, bob, office, lab, bobs


def test_overlapping_routes_are_refused_unless_overwrite(registry: Registry, accounts) -> None:
    alice, _, office, lab, _ = accounts
    route, replaced = registry.add_ip_route(alice.id, "198.18.5.7/24", "office", "LAN")
    assert (route.network, route.tunnel_id, route.tunnel_name, route.comment, replaced) == ("198.18.5.0/24", office.id, "office", "LAN", [])
    with pytest.raises(ConflictError, match=r"198.18.5.128/25 overlaps the route 198.18.5.0/24 .*--overwrite"):
        registry.add_ip_route(alice.id, "198.18.5.128/25", "lab")
    _, replaced = registry.add_ip_route(alice.id, "198.18.5.128/25", "lab", overwrite=True)
    assert replaced == ["198.18.5.0/24"]
    assert [(r.network, r.tunnel_id) for r in registry.ip_routes(alice.id)] == [("198.18.5.128/25", lab.id)]
    registry.add_ip_route(alice.id, "2001:db8::/48", "office")  # another family never overlaps
    registry.add_ip_route(alice.id, "198.18.5.10", "office")
    assert {r.network for r in registry.ip_routes(alice.id)} == {"198.18.5.128/25", "2001:db8::/48", "198.18.5.10/32"}


def test_accounts_never_see_or_reach_each_others_routes(registry: Registry, accounts) -> None:
    alice, bob, office, _, bobs = accounts
    registry.add_ip_route(alice.id, "198.18.5.0/24", "office")
    registry.add_ip_route(bob.id, "198.18.5.0/24", "home")  # the same CIDR, bob's own
    assert [r.tunnel_id for r in registry.ip_routes(bob.id)] == [bobs.id]
    with pytest.raises(NotFoundError):
        registry.add_ip_route(bob.id, "198.18.6.0/24", "office")  # alice's tunnel, by name
    with pytest.raises(NotFoundError):
        registry.add_ip_route(bob.id, "198.18.6.0/24", office.id)  # … and by id
    with pytest.raises(NotFoundError):
        registry.delete_ip_route(bob.id, "198.18.6.0/24")
    snapshot = registry.private_snapshot()
    target = flows.Target("tcp", "198.18.5.10", 80)
    assert decide(snapshot, Credential(alice.id, "account"), target)[0].tunnel_id == office.id
    assert decide(snapshot, Credential(bob.id, "account"), target)[0].tunnel_id == bobs.id


def test_bad_input_is_one_clear_error(registry: Registry, accounts) -> None:
    alice = accounts[0]
    with pytest.raises(ConfigError, match="invalid CIDR '198.18.300.0/24'"):
        registry.add_ip_route(alice.id, "198.18.300.0/24", "office")
    with pytest.raises(ConfigError, match="comment"):
        registry.add_ip_route(alice.id, "198.18.5.0/24", "office", "x" * 201)
    with pytest.raises(NotFoundError, match="tunnel 'nope' not found"):
        registry.add_ip_route(alice.id, "198.18.5.0/24", "nope")
    assert registry.ip_routes(alice.id) == []


def test_deleting_a_tunnel_deletes_its_routes(registry: Registry, accounts) -> None:
    alice, _, _, lab, _ = accounts
    registry.add_ip_route(alice.id, "198.18.5.0/24", "office")
    registry.add_ip_route(alice.id, "198.18.9.0/24", "lab")
    registry.delete_tunnel(alice.id, "office")
    assert [r.network for r in registry.ip_routes(alice.id)] == ["198.18.9.0/24"]
    assert registry.private_snapshot().routes[alice.id] == ((ipaddress.ip_network("198.18.9.0/24"), lab.id),)


def test_network_policies_admit_listed_live_tokens_inside_the_route(registry: Registry, accounts) -> None:
    alice, bob, office, _, _ = accounts
    registry.add_ip_route(alice.id, "198.18.5.0/24", "office")
    ci, _ = registry.create_service_token(alice.id, "ci")
    other, _ = registry.create_service_token(alice.id, "other")
    with pytest.raises(NotFoundError, match="not inside a route"):
        registry.set_network_policy(alice.id, "198.18.0.0/16", ["ci"])
    with pytest.raises(NotFoundError, match="service token 'nope' not found"):
        registry.set_network_policy(alice.id, "198.18.5.0/24", ["nope"])
    with pytest.raises(NotFoundError):
        registry.set_network_policy(bob.id, "198.18.5.0/24", [])
    registry.set_network_policy(alice.id, "198.18.5.10/32", ["ci"])
    assert registry.network_policies(alice.id) == {"198.18.5.10/32": ["ci"]}

    def verdict(token: str | None, host: str):
        snapshot = registry.private_snapshot()
        credential = Credential(alice.id, token or "account", token)
        return decide(snapshot, credential, flows.Target("tcp", host, 22))

    assert verdict("ci", "198.18.5.10") == [Route(office.id, "198.18.5.0/24", (ipaddress.ip_network("198.18.5.10/32"),))]
    assert verdict("ci", "198.18.5.11") == Refusal(flows.NOT_ALLOWED, "service token ci may not reach 198.18.5.11")
    assert isinstance(verdict("other", "198.18.5.10"), Refusal)
    assert verdict(None, "198.18.5.11")[0].allowed == (ipaddress.ip_network("198.18.5.0/24"),)
    assert verdict(None, "198.18.6.1").code == flows.NETWORK_UNREACHABLE
    registry.revoke_service_token(alice.id, "ci")
    assert ci.client_id not in registry.private_snapshot().tokens and other.client_id in registry.private_snapshot().tokens
    registry.delete_network_policy(alice.id, "198.18.5.10")
    assert registry.network_policies(alice.id) == {}


def test_a_hostname_may_go_to_every_tunnel_the_credential_reaches(registry: Registry, accounts) -> None:
    alice, _, office, lab, _ = accounts
    registry.add_ip_route(alice.id, "198.18.5.0/24", "office")
    registry.add_ip_route(alice.id, "198.18.9.0/24", "lab")
    registry.add_ip_route(alice.id, "198.18.10.0/24", "lab")
    registry.create_service_token(alice.id, "ci")
    registry.set_network_policy(alice.id, "198.18.9.0/25", ["ci"])
    snapshot = registry.private_snapshot()
    name = flows.Target("tcp", "printer.office.test", 631)
    routes = decide(snapshot, Credential(alice.id, "account"), name)
    assert {route.tunnel_id: len(route.allowed) for route in routes} == {office.id: 1, lab.id: 2}
    assert decide(snapshot, Credential(alice.id, "ci", "ci"), name) == [Route(lab.id, "-", (ipaddress.ip_network("198.18.9.0/25"),))]
