"""Keeps `--ha-connections` tunnel connections up, with jittered exponential backoff.

A rejected credential stops everything (no retry loop); every other failure is
retried, and the wait starts over once a connection stayed up for a while.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass

import trio

from connector.egress.proxies import ProxyChoice
from connector.tunnel.connection import DialLimits, open_tunnel_connection
from connector.tunnel.edges import EdgeChooser
from connector.tunnel.metrics import ConnectorMetrics
from shared.credentials import Credentials
from shared.errors import AuthError, BurrowError
from shared.transport import StreamHandler, TunnelConnection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, in seconds."""

    base: float = 1.0
    cap: float = 8.0  # keeps "back within ~8 s of the edge" true however long the outage was
    stable_after: float = 60.0

    def delay(self, attempt: int) -> float:
        return random.uniform(self.base / 2, min(self.cap, self.base * 2**attempt))


class Supervisor:
    """Runs the connector's tunnel connections until cancelled or rejected."""

    def __init__(
        self, creds: Credentials, handler: StreamHandler, ha_connections: int, backoff: Backoff = Backoff(),
        limits: DialLimits = DialLimits(), metrics: ConnectorMetrics | None = None, warp_routing: bool = False,
        egress: ProxyChoice = ProxyChoice(),
    ):
        self.warp_routing = warp_routing
        self.metrics = metrics if metrics is not None else ConnectorMetrics()  # a throwaway registry unless served
        self.creds = creds
        self.handler = handler
        self.ha_connections = ha_connections
        self.backoff = backoff
        self.limits = limits
        self.egress = egress
        self.connector_id = str(uuid.uuid4())
        self.connections: dict[int, TunnelConnection] = {}
        self.endpoints: dict[int, str] = {}  # the edge each connection is on
        self.edges = EdgeChooser(creds.endpoint)
        self.stopping = False

    async def run(self) -> None:
        """Keep every connection up; raise AuthError if the edge rejects the credentials.

        The first connection registers before the others dial, so they know every live edge.
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self._keep_up, 0)
            for index in range(1, self.ha_connections):
                nursery.start_soon(self._keep_up, index)

    async def drain(self, grace: float) -> None:
        """Announce a drain on every connection and let open streams finish."""
        self.stopping = True
        async with trio.open_nursery() as nursery:
            for connection in list(self.connections.values()):
                nursery.start_soon(connection.drain, grace)

    async def _keep_up(self, index: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
        attempt = 0
        while True:
            started = trio.current_time()
            endpoint = self.edges.endpoint_for(index, started)
            try:
                try:
                    connection, registered = await open_tunnel_connection(
                        self.creds, self.connector_id, index, self.limits, self.warp_routing, self.egress, endpoint
                    )
                finally:
                    task_status.started()  # the first attempt is over: the other connections may dial
                    task_status = trio.TASK_STATUS_IGNORED
                self.edges.learn(registered.edges)
                self.connections[index] = connection
                self.endpoints[index] = endpoint
                self.metrics.sessions.set(len(self.connections))
                log.info(
                    "tunnel.registered index=%d connection=%s edge=%s tunnel=%s",
                    index, registered.connection_id, endpoint, self.creds.tunnel_id,
                )
                try:
                    await connection.serve(self.handler)
                finally:
                    self.connections.pop(index, None)
                    self.endpoints.pop(index, None)
                    self.metrics.sessions.set(len(self.connections))
                if self.stopping:
                    return
                reason = "the edge closed the session"
                self.metrics.connection_failed(None)
            except AuthError as exc:
                self.metrics.connection_failed(exc)
                raise
            except BurrowError as exc:
                reason = str(exc)
                self.metrics.connection_failed(exc)
            self.edges.failed(endpoint, trio.current_time())
            if trio.current_time() - started > self.backoff.stable_after:
                attempt = 0
            delay = self.backoff.delay(attempt)
            attempt += 1
            if self.stopping:
                return
            log.warning("tunnel.retrying index=%d in=%.1fs error=%s", index, delay, reason)
            await trio.sleep(delay)
            self.metrics.reconnects.inc()
