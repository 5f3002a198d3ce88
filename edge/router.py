"""Which live connector session serves a hostname.

The zone snapshot maps a hostname to its tunnel; the router keeps each
tunnel's live sessions and picks the least-loaded one. Picking is synchronous:
decide first, await after.
"""

from __future__ import annotations

import logging

from edge.zone import Zones
from shared.errors import TunnelUnavailable
from shared.transport import TunnelConnection

log = logging.getLogger(__name__)


class Router:
    """Hostname → tunnel → live sessions."""

    def __init__(self, zones: Zones) -> None:
        self.zones = zones
        self._sessions: dict[str, list[TunnelConnection]] = {}

    def update_zones(self, zones: Zones) -> None:
        """Swap in a fresh registry snapshot."""
        self.zones = zones

    def add(self, tunnel_id: str, connection: TunnelConnection) -> None:
        self._sessions.setdefault(tunnel_id, []).append(connection)

    def remove(self, tunnel_id: str, connection: TunnelConnection) -> None:
        sessions = self._sessions.get(tunnel_id, [])
        if connection in sessions:
            sessions.remove(connection)
        if not sessions:
            self._sessions.pop(tunnel_id, None)

    def sessions(self, tunnel_id: str) -> list[TunnelConnection]:
        return list(self._sessions.get(tunnel_id, ()))

    def all_sessions(self) -> list[TunnelConnection]:
        return [conn for sessions in self._sessions.values() for conn in sessions]

    def pick(self, tunnel_id: str) -> TunnelConnection:
        """The accepting session with the fewest open streams."""
        candidates = [conn for conn in self._sessions.get(tunnel_id, ()) if conn.accepting]
        if not candidates:
            raise TunnelUnavailable(f"tunnel {tunnel_id} has no connector")
        return min(candidates, key=lambda conn: conn.active_streams)
