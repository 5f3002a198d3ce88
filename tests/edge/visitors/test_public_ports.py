"""edge/visitors/public_ports.py against a real registry and sockets (no connector): listeners
follow the routes, a visitor without a connector is closed, a drain stops accepting."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from edge.dns.zone import Zones
from edge.registry.store import Registry
from edge.routing.router import Router
from edge.visitors.public_ports import PublicPorts
from shared.crypto import mint_secret
from shared.edge_config import PortRange


def free_pair() -> int:
    """A loopback port free for TCP and UDP."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            try:
                udp.bind(("127.0.0.1", tcp.getsockname()[1]))
            except OSError:
                continue
            return tcp.getsockname()[1]


@pytest.fixture
def registry(tmp_path: Path):
    reg = Registry.open(tmp_path / "edge.db")
    yield reg
    reg.close()


async def refused(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return True
    async with stream:
        return await stream.receive_some(1) == b""  # accepted, then closed: no connector


async def test_listeners_follow_routes_and_a_drain_stops_accepting(registry: Registry) -> None:
    port = free_pair()
    ports = PortRange(port, port)
    account = registry.create_account("alice")[0]
    tunnel = registry.create_tunnel(account.id, "web", mint_secret())
    public = PublicPorts(registry, Router(Zones()), "127.0.0.1", ports, ports)
    async with trio.open_nursery() as nursery:
        await nursery.start(public.run)
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)  # nothing routed: nothing listens
        registry.route_port(account.id, tunnel.id, "tcp", port, ports)
        registry.route_port(account.id, tunnel.id, "udp", port, ports)
        await public.sync()
        assert await refused(port) and public.stats() == [("tcp", port, 0, 1, 0), ("udp", port, 0, 0, 0)]
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as visitor:
            await visitor.sendto(b"hello", ("127.0.0.1", port))
            with trio.move_on_after(5):
                while public.udp[port].dropped < 1:  # no connector: the flow drops it
                    await trio.sleep(0.01)
        assert public.udp[port].started == 1 and public.udp[port].dropped == 1
        public.stop_accepting()
        await trio.sleep(0.05)
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)
        assert not public.udp[port].accepting
        registry.remove_port(account.id, tunnel.id, "tcp", port)
        await public.sync()  # a drained edge opens and closes nothing more
        assert ("udp", port) in public.routes and ("tcp", port) in public.routes
        nursery.cancel_scope.cancel()
