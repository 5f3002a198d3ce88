"""This edge among the edges sharing the registry: it registers, beats every
`HEARTBEAT_INTERVAL`, and keeps the live set its DNS answers (A/AAAA of every live edge) and its
registration replies (their tunnel endpoints) come from. When the registry cannot be read the last
live set stays; this edge is always in it."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from functools import partial

import trio

from edge.registry.edges import HEARTBEAT_INTERVAL
from edge.registry.models import EdgeInfo
from edge.registry.store import Registry

log = logging.getLogger(__name__)

MAX_LISTED_EDGES = 16  # tunnel endpoints one registration reply carries


class Membership:
    def __init__(
        self, registry: Registry, name: str, run_id: str, public_ips: tuple[str, ...], tunnel_endpoint: str,
        sessions: Callable[[], int], on_addresses: Callable[[tuple[str, ...]], None] = lambda addresses: None,
        on_endpoints: Callable[[list[str]], None] = lambda endpoints: None,
    ) -> None:
        self.registry = registry
        self.me = EdgeInfo(name, run_id, tuple(public_ips), tunnel_endpoint, "", 0, 0, True)
        self.sessions = sessions
        self.on_addresses = on_addresses  # the DNS server's answers follow the live set
        self.on_endpoints = on_endpoints  # and so do the connectors (`EdgeNews`)
        self.live: tuple[EdgeInfo, ...] = (self.me,)
        self.addresses: tuple[str, ...] = _addresses(self.live)

    def join(self) -> None:
        """Register this run (blocking: at start-up)."""
        self.registry.register_edge(self.me.name, self.me.run_id, self.me.public_ips, self.me.tunnel_endpoint)
        self._adopt(self.registry.live_edges())

    async def run(self) -> None:
        while True:
            await trio.sleep(HEARTBEAT_INTERVAL)
            await self.beat()

    async def beat(self) -> None:
        me = self.me
        try:
            if not await trio.to_thread.run_sync(self.registry.edge_heartbeat, me.name, me.run_id, self.sessions()):
                log.warning("edge.reregistered name=%s (its row was taken or removed; two edges with one name?)", me.name)
                await trio.to_thread.run_sync(self.registry.register_edge, me.name, me.run_id, me.public_ips, me.tunnel_endpoint)
            self._adopt(await trio.to_thread.run_sync(self.registry.live_edges))
            await trio.to_thread.run_sync(partial(self.registry.cleanup_connections, me.run_id, dead_edges_only=True))  # a dead edge's rows
        except Exception as exc:  # the registry is down: keep serving with the last live set
            log.warning("edge.heartbeat_failed error=%s", exc)

    async def refresh(self) -> None:
        """Another edge joined or left (the change feed woke us): re-read the live set now, so
        registration replies list a new edge at once rather than after our next heartbeat."""
        try:
            self._adopt(await trio.to_thread.run_sync(self.registry.live_edges))
        except Exception as exc:  # the registry is down: the next heartbeat tries again
            log.warning("edge.members_unavailable error=%s", exc)

    def leave(self) -> None:
        """Remove this run's row and connection rows (blocking: at shutdown)."""
        self.registry.remove_edge(self.me.name, self.me.run_id)

    def tunnel_endpoints(self) -> list[str]:
        """Where connectors may dial: every live edge's tunnel endpoint, this edge first."""
        others = [edge.tunnel_endpoint for edge in self.live if edge.run_id != self.me.run_id]
        return [self.me.tunnel_endpoint, *others][:MAX_LISTED_EDGES]

    def _adopt(self, live: list[EdgeInfo]) -> None:
        if all(edge.run_id != self.me.run_id for edge in live):
            live = [*live, self.me]
        names, endpoints = [edge.name for edge in self.live], self.tunnel_endpoints()
        self.live = tuple(live)
        if self.tunnel_endpoints() != endpoints:
            self.on_endpoints(self.tunnel_endpoints())
        if [edge.name for edge in live] != names:
            log.info("edge.members live=%s", ",".join(edge.name for edge in live))
        addresses = _addresses(self.live)
        if addresses != self.addresses:
            self.addresses = addresses
            self.on_addresses(addresses)


def _addresses(edges: tuple[EdgeInfo, ...]) -> tuple[str, ...]:
    """Every live edge's public addresses, in one order on every edge (IPv4 first)."""
    unique = {ipaddress.ip_address(ip) for edge in edges for ip in edge.public_ips}
    return tuple(str(ip) for ip in sorted(unique, key=lambda ip: (ip.version, ip.packed)))
