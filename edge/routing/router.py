"""Which live connector session serves a hostname.

The zone snapshot maps a hostname to its tunnel; the router keeps each
tunnel's live sessions and picks the least-loaded one. Picking is synchronous:
decide first, await after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from edge.dns.zone import Zones
from shared.errors import BurrowError, TunnelUnavailable
from shared.transport import TunnelConnection

log = logging.getLogger(__name__)

DEFAULT_MAX_STREAMS_PER_TUNNEL = 1000  # `burrow-edge serve --max-streams-per-tunnel`
BUSY_RETRY_AFTER = 1  # seconds, in the 503 a visitor gets when the tunnel is at its limit
MAX_CACHED_HOSTS = 4096  # `tunnel_for` answers kept per zone snapshot (visitors choose Host headers)
_UNCACHED = object()


class TunnelBusy(BurrowError):
    """The tunnel already carries its maximum of concurrent streams; `status` is what the visitor gets."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TunnelLimits:
    """Limits of one tunnel tighter than the edge's own (a quick tunnel's): past `max_streams`
    a visitor gets 429, a request body over `max_body` bytes 413."""

    max_streams: int
    max_body: int


class Router:
    """Hostname → tunnel → live sessions."""

    def __init__(self, zones: Zones, max_streams_per_tunnel: int = DEFAULT_MAX_STREAMS_PER_TUNNEL) -> None:
        self.zones = zones  # `registry_zones` with `extra_hosts` added: what DNS and routing answer from
        self.registry_zones = zones
        self.extra_hosts: Mapping[str, str] = {}  # hostname → tunnel id, outside the registry (quick tunnels)
        self.limits: dict[str, TunnelLimits] = {}  # tunnel id → its own limits
        self.max_streams_per_tunnel = max_streams_per_tunnel
        self._sessions: dict[str, list[TunnelConnection]] = {}
        self._info: dict[TunnelConnection, Any] = {}
        self._features: dict[TunnelConnection, frozenset[str]] = {}  # what each session registered it serves
        self._dropped: set[str] = set()
        self._tunnels: dict[str, str | None] = {}  # `tunnel_for` answers for `_tunnels_of`
        self._tunnels_of: Zones | None = None
        self.on_change: Callable[[frozenset[str]], None] = lambda tunnels: None  # the tunnels with a session changed

    def tunnel_for(self, host: str) -> str | None:
        """`self.zones.tunnel_for(host)` for a normalized `host`, remembered until the zone
        snapshot is replaced."""
        if self._tunnels_of is not self.zones:
            self._tunnels, self._tunnels_of = {}, self.zones
        tunnel_id = self._tunnels.get(host, _UNCACHED)
        if tunnel_id is _UNCACHED:
            if len(self._tunnels) >= MAX_CACHED_HOSTS:
                self._tunnels.clear()
            tunnel_id = self._tunnels[host] = self.zones.tunnel_for(host)
        return tunnel_id

    def update_zones(self, zones: Zones) -> None:
        """Swap in a fresh registry snapshot."""
        self.registry_zones = zones
        self.zones = zones.with_hosts(self.extra_hosts) if self.extra_hosts else zones

    def set_extra_hosts(self, hosts: Mapping[str, str]) -> None:
        """Route (and resolve) each hostname of `hosts` to its tunnel, on top of the registry's routes."""
        self.extra_hosts = dict(hosts)
        self.update_zones(self.registry_zones)

    def add(self, tunnel_id: str, connection: TunnelConnection, info: Any = None, features: frozenset[str] = frozenset()) -> None:
        """Start routing to `connection`; `info` describes it for `connections()`; `features`: what
        its connector registered it serves beyond HTTP (see `shared.registration`).

        Raises TunnelUnavailable for a tunnel dropped by `drop()` (deleted meanwhile).
        """
        if tunnel_id in self._dropped:
            raise TunnelUnavailable(f"tunnel {tunnel_id} was deleted")
        first = tunnel_id not in self._sessions
        self._sessions.setdefault(tunnel_id, []).append(connection)
        self._info[connection] = info
        if features:
            self._features[connection] = features
        if first:
            self.on_change(frozenset(self._sessions))

    def remove(self, tunnel_id: str, connection: TunnelConnection) -> None:
        sessions = self._sessions.get(tunnel_id, [])
        if connection in sessions:
            sessions.remove(connection)
        self._info.pop(connection, None)
        self._features.pop(connection, None)
        if not sessions and self._sessions.pop(tunnel_id, None) is not None:
            self.on_change(frozenset(self._sessions))

    def connections(self, tunnel_id: str) -> list[Any]:
        """The `info` of each live session of the tunnel, oldest first."""
        return [self._info.get(conn) for conn in self._sessions.get(tunnel_id, ())]

    def by_connector(self, tunnel_id: str, feature: str) -> dict[str, TunnelConnection | None]:
        """Each connector of the tunnel (by `connector_id` of its sessions' info) → one of its accepting
        sessions that registered `feature`, or None when none did (a connector too old for it)."""
        found: dict[str, TunnelConnection | None] = {}
        for conn in self._sessions.get(tunnel_id, ()):
            connector_id = getattr(self._info.get(conn), "connector_id", None)
            if connector_id is None:
                continue
            if found.get(connector_id) is None:
                found[connector_id] = conn if feature in self._features.get(conn, ()) and conn.accepting else None
        return found

    def one_per_connector(self, feature: str) -> list[TunnelConnection]:
        """One accepting session of every connector (of every tunnel) that registered `feature`."""
        found: dict[str, TunnelConnection] = {}
        for sessions in self._sessions.values():
            for conn in sessions:
                connector_id = getattr(self._info.get(conn), "connector_id", None)
                if connector_id is not None and connector_id not in found and conn.accepting and feature in self._features.get(conn, ()):
                    found[connector_id] = conn
        return list(found.values())

    def count(self, tunnel_id: str) -> int:
        return len(self._sessions.get(tunnel_id, ()))

    async def drop(self, tunnel_id: str, grace: float) -> int:
        """Close every session of a deleted tunnel (drain, then close within `grace`); refuse new ones.

        Returns how many sessions were closed.
        """
        self._dropped.add(tunnel_id)
        sessions = self._sessions.pop(tunnel_id, [])
        for conn in sessions:
            self._info.pop(conn, None)
            self._features.pop(conn, None)
        if sessions:
            self.on_change(frozenset(self._sessions))
        async with trio.open_nursery() as nursery:
            for conn in sessions:
                nursery.start_soon(_close, conn, grace)
        if sessions:
            log.info("router.dropped tunnel=%s sessions=%d", tunnel_id, len(sessions))
        return len(sessions)

    async def disconnect(self, tunnel_id: str, connector_id: str, grace: float) -> int:
        """Close the sessions one connector holds for the tunnel (drain, then close within `grace`).

        Returns how many; unlike `drop()`, the connector may register again.
        """
        sessions = [
            conn for conn in self._sessions.get(tunnel_id, ())
            if getattr(self._info.get(conn), "connector_id", None) == connector_id
        ]
        async with trio.open_nursery() as nursery:
            for conn in sessions:
                nursery.start_soon(_close, conn, grace)
        if sessions:
            log.info("router.disconnected tunnel=%s connector=%s sessions=%d", tunnel_id, connector_id, len(sessions))
        return len(sessions)

    def sessions(self, tunnel_id: str) -> list[TunnelConnection]:
        return list(self._sessions.get(tunnel_id, ()))

    def live(self) -> dict[str, list[TunnelConnection]]:
        """A snapshot: tunnel id → its live sessions (for metrics)."""
        return {tunnel_id: list(sessions) for tunnel_id, sessions in self._sessions.items()}

    def all_sessions(self) -> list[TunnelConnection]:
        return [conn for sessions in self._sessions.values() for conn in sessions]

    def pick(self, tunnel_id: str, avoid: tuple[TunnelConnection, ...] = (), feature: str | None = None) -> TunnelConnection:
        """The accepting session with the fewest open streams, other than those in `avoid`;
        with `feature`, only among sessions whose connector registered it."""
        best, fewest, total = None, 0, 0
        for conn in self._sessions.get(tunnel_id, ()):  # one pass: this runs for every request
            streams = conn.active_streams
            total += streams
            if (best is None or streams < fewest) and conn.accepting and conn not in avoid:
                if feature is None or feature in self._features.get(conn, ()):
                    best, fewest = conn, streams
        if best is None:
            if feature is not None and self._sessions.get(tunnel_id):
                raise TunnelUnavailable(f"tunnel {tunnel_id} has no connector that serves {feature}")
            raise TunnelUnavailable(f"tunnel {tunnel_id} has no connector")
        if (limits := self.limits.get(tunnel_id)) is not None and total >= limits.max_streams:
            raise TunnelBusy(f"tunnel {tunnel_id} carries {limits.max_streams} requests already", status=429)
        if total >= self.max_streams_per_tunnel:
            raise TunnelBusy(f"tunnel {tunnel_id} carries {self.max_streams_per_tunnel} requests already")
        return best


async def _close(conn: TunnelConnection, grace: float) -> None:
    try:
        await conn.drain(grace)
    except (BurrowError, trio.BrokenResourceError, trio.ClosedResourceError):
        await trio.aclose_forcefully(conn.transport)
