"""Keeps `--ha-connections` tunnel connections up, with jittered exponential backoff.

A rejected credential stops everything (no retry loop); every other failure is
retried, and the wait starts over once a connection stayed up for a while. When the
live edges change (a registration reply or an `edges` stream says so), the connections
no longer on their edge move there one at a time, each drained first.
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
from shared import edge_news, heap
from shared.credentials import Credentials
from shared.errors import AuthError, BurrowError
from shared.events import ResponseHead
from shared.protocol import KIND_EDGES
from shared.transport import StreamHandler, TunnelConnection, TunnelStream

log = logging.getLogger(__name__)

MOVE_GRACE = 30.0  # seconds a moving connection's open streams have to finish
MOVE_TIMEOUT = 30.0  # seconds to wait for a moved connection to register before moving the next


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
        self._moving: set[int] = set()  # connections being moved to their edge: no failure, no backoff
        self._misplaced = trio.Event()  # the live edges changed: some connections may belong elsewhere

    async def run(self) -> None:
        """Keep every connection up; raise AuthError if the edge rejects the credentials.

        The first connection registers before the others dial, so they know every live edge.
        """
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._rebalance)
                await nursery.start(self._keep_up, 0)
                heap.settle()  # start-up is over: what it built lives as long as the connector
                for index in range(1, self.ha_connections):
                    nursery.start_soon(self._keep_up, index)
        finally:
            heap.release()

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
                if self.edges.learn(registered.edges):
                    self._misplaced.set()
                self.connections[index] = connection
                self.endpoints[index] = endpoint
                self.metrics.sessions.set(len(self.connections))
                log.info(
                    "tunnel.registered index=%d connection=%s edge=%s tunnel=%s",
                    index, registered.connection_id, endpoint, self.creds.tunnel_id,
                )
                try:
                    await connection.serve(self._serve_stream)
                finally:
                    self.connections.pop(index, None)
                    self.endpoints.pop(index, None)
                    self.metrics.sessions.set(len(self.connections))
                if self.stopping:
                    return
                if index in self._moving:  # drained by `_rebalance`: dial its edge now
                    self._moving.discard(index)
                    continue
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

    async def _serve_stream(self, stream: TunnelStream) -> None:
        if stream.kind != KIND_EDGES:
            await self.handler(stream)
            return
        try:  # the edge tells us the live edges changed
            edges = edge_news.decode(stream.head)
        except ValueError as exc:
            log.warning("tunnel.edges_unreadable error=%s", exc)
            await stream.send_response(ResponseHead(400, ((b"content-length", b"0"),), has_body=False))
            return
        await stream.send_response(ResponseHead(204, (), has_body=False))
        if self.edges.learn(edges):
            self._misplaced.set()

    async def _rebalance(self) -> None:
        """Move each connection that is not on the edge `EdgeChooser` gives it, one at a time, so
        the others keep serving: drain it (its streams finish), dial its edge, wait for it to register."""
        while True:
            await self._misplaced.wait()
            self._misplaced = trio.Event()
            for index in range(self.ha_connections):
                connection, endpoint = self.connections.get(index), self.endpoints.get(index)
                wanted = self.edges.endpoint_for(index, trio.current_time())
                if connection is None or endpoint == wanted or self.stopping:
                    continue
                log.info("tunnel.moving index=%d from=%s to=%s", index, endpoint, wanted)
                self._moving.add(index)
                await connection.drain(MOVE_GRACE)
                with trio.move_on_after(MOVE_TIMEOUT):
                    while self.connections.get(index) in (None, connection):
                        await trio.sleep(0.05)
