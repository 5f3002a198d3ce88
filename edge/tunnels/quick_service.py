"""The trio shell around `edge.tunnels.quick`: creates quick tunnels for the API, tells the
router (routes, DNS, limits) and expires them once their grace has passed."""

from __future__ import annotations

import logging

import trio

from edge.routing.router import Router, TunnelLimits
from edge.tunnels.quick import QuickTunnels
from shared.crypto import b64encode, mint_secret

log = logging.getLogger(__name__)

EXPIRY_POLL = 1.0  # seconds between expiry checks: a name goes at most this long after its grace


class QuickService:
    """Quick tunnels on one edge; `endpoint` is where connectors dial (host:port)."""

    def __init__(self, tunnels: QuickTunnels, router: Router, endpoint: str) -> None:
        self.tunnels = tunnels
        self.router = router
        self.endpoint = endpoint
        self.limits = TunnelLimits(tunnels.settings.max_streams, tunnels.settings.max_body)

    def create(self, source: str) -> dict:
        """A new quick tunnel for the client at `source`: its id, secret, hostname and endpoint.
        Raises QuickRefused past the limits."""
        secret = mint_secret()
        tunnel = self.tunnels.create(source, secret, trio.current_time(), self._taken)
        self.router.limits[tunnel.id] = self.limits
        self._publish()
        log.info("quick.created tunnel=%s hostname=%s source=%s", tunnel.id, tunnel.hostname, source)
        return {
            "id": tunnel.id, "secret": b64encode(secret), "hostname": tunnel.hostname, "url": f"https://{tunnel.hostname}",
            "endpoint": self.endpoint, "zone": self.tunnels.zone, "grace": self.tunnels.settings.grace,
        }

    def opened(self, tunnel_id: str) -> None:
        self.tunnels.session_started(tunnel_id)

    def closed(self, tunnel_id: str) -> None:
        self.tunnels.session_ended(tunnel_id, trio.current_time())

    async def run(self) -> None:
        """Forget quick tunnels whose grace has passed: their names stop resolving and routing."""
        while True:
            await trio.sleep(EXPIRY_POLL)
            expired = self.tunnels.expire(trio.current_time())
            if expired:
                for tunnel in expired:
                    self.router.limits.pop(tunnel.id, None)
                    log.info("quick.expired tunnel=%s hostname=%s", tunnel.id, tunnel.hostname)
                self._publish()

    def _publish(self) -> None:
        self.router.set_extra_hosts(self.tunnels.hosts())

    def _taken(self, hostname: str) -> bool:
        """True when an account's record holds `hostname` (from before `quick.<zone>` was reserved)."""
        zone = self.router.registry_zones.zone_for(hostname)
        return zone is not None and zone.owner(hostname) == hostname
