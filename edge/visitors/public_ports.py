"""Public TCP and UDP ports: a listener for every port a tunnel reserved (`burrow tunnel
route tcp|udp`), opened and closed as routes are added and removed while the edge runs.

A TCP visitor's connection becomes one tunnel stream of kind `tcp`: once the connector
answers 200 (its origin accepted), bytes are piped both ways, half-closes included
(`shared.relay`). UDP is `edge.visitors.udp_port`. Only sessions whose connector
registered `FEATURE_PORTS` are sent port streams.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import trio

from edge.registry.store import Registry
from edge.routing.router import Router
from edge.visitors.udp_port import FlowLimits, UdpPort
from shared.edge_config import PortRange
from shared.errors import BurrowError
from shared.port_streams import MAX_REASON, port_head
from shared.protocol import KIND_TCP
from shared.registration import FEATURE_PORTS
from shared.relay import relay

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 5.0  # seconds between re-reads of the routes (writes made by other processes)
ANSWER_TIMEOUT = 75.0  # the connector's answer to a new TCP connection (its connectTimeout is 30 s by default)
TCP_BACKLOG = 256

Key = tuple[str, int]  # (protocol, port)


class PublicPorts:
    """Keeps one listener per reserved port of the edge's ranges on `host` ("" is every address)."""

    def __init__(
        self, registry: Registry, router: Router, host: str, tcp_ports: PortRange | None, udp_ports: PortRange | None,
        flow_limits: FlowLimits = FlowLimits(),
    ) -> None:
        self.registry = registry
        self.router = router
        self.host = host
        self.ranges = {"tcp": tcp_ports, "udp": udp_ports}
        self.flow_limits = flow_limits
        self.routes: dict[Key, str] = {}  # (protocol, port) → tunnel id, read per connection / flow
        self.udp: dict[int, UdpPort] = {}
        self.tcp: dict[int, list[int]] = {}  # port → [connections open, connections accepted] while it listens
        self._open: dict[Key, trio.CancelScope] = {}  # each listening port: cancelling it closes its connections too
        self._accepting: dict[int, trio.CancelScope] = {}  # each TCP port's accept loop
        self._stopped = False
        self._failed: set[Key] = set()  # reported once until the port opens
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None

    def stats(self) -> list[tuple[str, int, int, int, int]]:
        """(protocol, port, open now, opened, datagrams dropped) per listening port, for /metrics."""
        tcp = [("tcp", port, now, total, 0) for port, (now, total) in self.tcp.items()]
        return tcp + [("udp", port, len(udp.flows), udp.started, udp.dropped) for port, udp in self.udp.items()]

    @property
    def enabled(self) -> bool:
        return any(self.ranges.values())

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Open the reserved ports, then follow the registry until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self.sync()
            task_status.started()
            while True:
                await trio.sleep(REFRESH_INTERVAL)
                await self.sync()

    def stop_accepting(self) -> None:
        """The edge drains: new TCP connections are refused and new UDP flows dropped; those
        open go on until they end or the edge stops."""
        self._stopped = True
        for scope in self._accepting.values():
            scope.cancel()
        for udp in self.udp.values():
            udp.accepting = False

    async def sync(self) -> None:
        """Open a listener for each newly reserved port, close those of released ones (their
        connections and flows too). A port that cannot be bound is logged and tried again."""
        if self._nursery is None or not self.enabled or self._stopped:
            return
        routes = await trio.to_thread.run_sync(self.registry.port_routes)
        async with self._lock:
            wanted = {(r.protocol, r.port): r.tunnel_id for r in routes if r.port in (self.ranges[r.protocol] or ())}
            self.routes = wanted
            for key in [key for key in self._open if key not in wanted]:
                self._open.pop(key).cancel()
                log.info("port.closed protocol=%s port=%d", *key)
            for key in wanted.keys() - self._open.keys():
                serve = self._serve_tcp if key[0] == "tcp" else self._serve_udp
                try:
                    self._open[key] = await self._nursery.start(serve, key[1])
                except OSError as exc:
                    if key not in self._failed:
                        log.warning("port.unavailable protocol=%s port=%d error=%s", *key, exc.strerror or exc)
                    self._failed.add(key)
                    continue
                self._failed.discard(key)
                log.info("port.listening protocol=%s port=%d tunnel=%s", *key, wanted[key])

    async def _serve_tcp(self, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            listeners = await trio.open_tcp_listeners(port, host=self.host or None, backlog=TCP_BACKLOG)
            counts = self.tcp[port] = [0, 0]
            accepting = self._accepting[port] = trio.CancelScope()
            task_status.started(scope)
            try:
                async with trio.open_nursery() as connections:  # cancelled with the port
                    with accepting:  # cancelled alone by a drain: the listeners close, connections go on
                        await trio.serve_listeners(partial(self._tcp_connection, port, counts), listeners, handler_nursery=connections)
            finally:
                if self.tcp.get(port) is counts:
                    del self.tcp[port]
                if self._accepting.get(port) is accepting:
                    del self._accepting[port]

    async def _serve_udp(self, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        udp = UdpPort(port, lambda: self.routes.get(("udp", port)), self.router, self.flow_limits)
        with trio.CancelScope() as scope:
            self.udp[port] = udp
            try:
                await udp.serve(self.host, scope, task_status=task_status)
            finally:
                if self.udp.get(port) is udp:
                    del self.udp[port]

    async def _tcp_connection(self, port: int, counts: list[int], visitor: trio.SocketStream) -> None:
        """One visitor connection; whatever goes wrong ends this connection only."""
        counts[0] += 1
        counts[1] += 1
        async with visitor:
            try:
                peer = visitor.socket.getpeername()[:2]
                await self._carry_tcp(port, visitor, peer)
            except OSError:  # gone already (reset before we looked)
                pass
            except Exception:
                log.exception("port.crashed protocol=tcp port=%d", port)
            finally:
                counts[0] -= 1

    async def _carry_tcp(self, port: int, visitor: trio.SocketStream, peer: tuple[str, int]) -> None:
        tunnel_id = self.routes.get(("tcp", port))
        if tunnel_id is None:
            return
        started = time.monotonic()
        try:
            connection = self.router.pick(tunnel_id, feature=FEATURE_PORTS)
            stream = await connection.open_stream(port_head("tcp", port, peer), KIND_TCP)
        except BurrowError as exc:
            log.info("port.refused protocol=tcp port=%d peer=%s error=%s", port, peer[0], exc)
            return
        async with stream:
            try:
                with trio.fail_after(ANSWER_TIMEOUT):
                    response = await stream.receive_response()
                    if response.status != 200:
                        reason = await _reason(stream)
                        log.info("port.refused protocol=tcp port=%d peer=%s status=%d error=%s", port, peer[0], response.status, reason)
                        return
                await relay(visitor, stream)
            except (BurrowError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                log.info("port.failed protocol=tcp port=%d peer=%s error=%s", port, peer[0], exc or type(exc).__name__)
                return
        log.info(
            "port.connection protocol=tcp port=%d peer=%s bytes_in=%d bytes_out=%d duration_ms=%.1f",
            port, peer[0], stream.bytes_sent, stream.bytes_received, (time.monotonic() - started) * 1000,
        )


async def _reason(stream) -> str:
    """The one-line reason an error answer carries (bounded)."""
    body = b""
    while len(body) < MAX_REASON and (chunk := await stream.receive()):
        body += chunk
    return body[:MAX_REASON].decode("utf-8", "replace").strip() or "-"
