"""Which live connector session serves a hostname.

The zone snapshot maps a hostname to its tunnel; the router keeps each
tunnel's live sessions and picks the least-loaded one. Picking is synchronous:
decide first, await after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
    """The tunnel already carries its maximum of concurrent streams."""


class Router:
    """Hostname → tunnel → live sessions."""

    def __init__(self, zones: Zones, max_streams_per_tunnel: int = DEFAULT_MAX_STREAMS_PER_TUNNEL) -> None:
        self.zones = zones
        self.max_streams_per_tunnel = max_streams_per_tunnel
        self._sessions: dict[str, list[TunnelConnection]] = {}
        self._info: dict[TunnelConnection, Any] = {}
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
        self.zones = zones

    def add(self, tunnel_id: str, connection: TunnelConnection, info: Any = None) -> None:
        """Start routing to `connection`; `info` describes it for `connections()`.

        Raises TunnelUnavailable for a tunnel dropped by `drop()` (deleted meanwhile).
        """
        if tunnel_id in self._dropped:
            raise TunnelUnavailable(f"tunnel {tunnel_id} was deleted")
        first = tunnel_id not in self._sessions
        self._sessions.setdefault(tunnel_id, []).append(connection)
        self._info[connection] = info
        if first:
            self.on_change(frozenset(self._sessions))

    def remove(self, tunnel_id: str, connection: TunnelConnection) -> None:
        sessions = self._sessions.get(tunnel_id, [])
        if connection in sessions:
            sessions.remove(connection)
        self._info.pop(connection, None)
        if not sessions and self._sessions.pop(tunnel_id, None) is not None:
            self.on_change(frozenset(self._sessions))

    def connections(self, tunnel_id: str) -> list[Any]:
        """The `info` of each live session of the tunnel, oldest first."""
        return [self._info.get(conn) for conn in self._sessions.get(tunnel_id, ())]

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

    def pick(self, tunnel_id: str, avoid: tuple[TunnelConnection, ...] = ()) -> TunnelConnection:
        """The accepting session with the fewest open streams, other than those in `avoid`."""
        best, fewest, total = None, 0, 0
        for conn in self._sessions.get(tunnel_id, ()):  # one pass: this runs for every request
            streams = conn.active_streams
            total += streams
            if (best is None or streams < fewest) and conn.accepting and conn not in avoid:
                best, fewest = conn, streams
        if best is None:
            raise TunnelUnavailable(f"tunnel {tunnel_id} has no connector")
        if total >= self.max_streams_per_tunnel:
            raise TunnelBusy(f"tunnel {tunnel_id} carries {self.max_streams_per_tunnel} requests already")
        return best


async def _close(conn: TunnelConnection, grace: float) -> None:
    try:
        await conn.drain(grace)
    except (BurrowError, trio.BrokenResourceError, trio.ClosedResourceError):
        await trio.aclose_forcefully(conn.transport)
