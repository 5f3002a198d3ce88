"""Public port routes in the registry: the range, one owner per port, the per-account limit,
release, deleted tunnels."""

from __future__ import annotations

import pytest

from edge.registry.models import PortRoute
from edge.registry.store import Registry
from shared.crypto import mint_secret
from shared.edge_config import PortRange
from shared.errors import ConfigError, ConflictError, NotFoundError

PORTS = PortRange(20000, 20009)


def tunnel(registry: Registry, account: str, name: str):
    owner = next((a for a in registry.list_accounts() if a.name == account), None) or registry.create_account(account)[0]
    return owner.id, registry.create_tunnel(owner.id, name, mint_secret()).id


def test_a_port_of_the_range_is_routed_moved_and_released(registry: Registry) -> None:
    account, web = tunnel(registry, "alice", "web")
    _, db = tunnel(registry, "alice", "db")
    assert registry.route_port(account, web, "tcp", 20000, PORTS) == PortRoute("tcp", 20000, account, web)
    registry.route_port(account, web, "udp", 20000, PORTS)  # TCP and UDP ports are separate
    registry.route_port(account, db, "tcp", 20000, PORTS)  # the account's own port moves to its other tunnel
    assert registry.port_routes(account) == [PortRoute("tcp", 20000, account, db), PortRoute("udp", 20000, account, web)]
    with pytest.raises(NotFoundError, match="TCP port 20000 is not routed to this tunnel"):
        registry.remove_port(account, web, "tcp", 20000)
    assert registry.remove_port(account, db, "tcp", 20000) == PortRoute("tcp", 20000, account, db)
    assert registry.port_routes() == [PortRoute("udp", 20000, account, web)]


def test_another_accounts_port_is_a_conflict_and_stays_its_own(registry: Registry) -> None:
    alice, web = tunnel(registry, "alice", "web")
    eve, hers = tunnel(registry, "eve", "hers")
    registry.route_port(alice, web, "tcp", 20001, PORTS)
    with pytest.raises(ConflictError, match="^TCP port 20001 is reserved by another account$"):
        registry.route_port(eve, hers, "tcp", 20001, PORTS)
    with pytest.raises(NotFoundError):
        registry.remove_port(eve, hers, "tcp", 20001)
    with pytest.raises(NotFoundError, match="tunnel"):
        registry.route_port(eve, web, "tcp", 20002, PORTS)  # her account, alice's tunnel
    assert registry.port_routes() == [PortRoute("tcp", 20001, alice, web)]


def test_an_account_holds_at_most_its_limit_of_ports(registry: Registry) -> None:
    alice, web = tunnel(registry, "alice", "web")
    _, db = tunnel(registry, "alice", "db")
    bob, his = tunnel(registry, "bob", "his")
    registry.route_port(alice, web, "tcp", 20000, PORTS, max_per_account=2)
    registry.route_port(alice, web, "udp", 20000, PORTS, max_per_account=2)  # TCP and UDP count together
    with pytest.raises(ConflictError, match="this account holds 2 public ports, this edge's limit .*--max-ports-per-account"):
        registry.route_port(alice, db, "tcp", 20001, PORTS, max_per_account=2)
    registry.route_port(alice, db, "tcp", 20000, PORTS, max_per_account=2)  # moving a port it holds is not one more
    registry.route_port(bob, his, "tcp", 20001, PORTS, max_per_account=2)  # another account has its own count
    registry.remove_port(alice, web, "udp", 20000)
    registry.route_port(alice, web, "tcp", 20002, PORTS, max_per_account=2)  # released: room for another
    assert registry.port_routes(alice) == [PortRoute("tcp", 20000, alice, db), PortRoute("tcp", 20002, alice, web)]


@pytest.mark.parametrize(
    "protocol, port, ports, message",
    [
        ("tcp", 19999, PORTS, "port 19999 is outside this edge's public TCP ports 20000-20009"),
        ("udp", 20010, PORTS, "port 20010 is outside this edge's public UDP ports 20000-20009"),
        ("tcp", 20000, None, "this edge has no public TCP ports"),
        ("sctp", 20000, PORTS, "unknown protocol 'sctp'"),
        ("tcp", True, PORTS, "outside"),
    ],
)
def test_a_port_outside_the_range_is_refused(registry: Registry, protocol, port, ports, message) -> None:
    account, web = tunnel(registry, "alice", "web")
    with pytest.raises(ConfigError, match=message):
        registry.route_port(account, web, protocol, port, ports)
    assert registry.port_routes() == []


def test_deleting_a_tunnel_releases_its_ports(registry: Registry) -> None:
    account, web = tunnel(registry, "alice", "web")
    registry.route_port(account, web, "udp", 20005, PORTS)
    registry.delete_tunnel(account, web)
    assert registry.port_routes() == []
    eve, hers = tunnel(registry, "eve", "hers")
    registry.route_port(eve, hers, "udp", 20005, PORTS)  # free for anyone again
