"""The loopback observability endpoint both sides serve: `/metrics`, `/ready`, `/healthcheck`.

`respond()` is the pure part (method + target in, status + headers + body out);
`serve_metrics()` is a small, bounded trio + h11 shell around it: a cap on
connections, on header bytes and on requests per connection, and a deadline for
each request. Each process passes its own `CollectorRegistry`, never the global
one, so several edges and connectors can live in one test process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shared.errors import ConfigError
from shared.values import format_hostport

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], "tuple[bool, dict]"]  # → (ready?, JSON body fields)

SERVER_HEADER = b"burrow-metrics"
MAX_HEADER_FIELDS = 100
JSON_TYPE = b"application/json"
TEXT_TYPE = b"text/plain; charset=utf-8"


@dataclass(frozen=True)
class MetricsLimits:
    max_connections: int = 32
    max_header_bytes: int = 8 * 1024
    request_timeout: float = 10.0  # reading one request head (and the first one after connecting)
    idle_timeout: float = 30.0  # between keep-alive requests
    send_timeout: float = 10.0
    max_requests: int = 100  # per connection, then close
    read_size: int = 8 * 1024


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: bytes
    body: bytes


def respond(method: bytes, target: bytes, registry: CollectorRegistry, ready: ReadyCheck) -> Reply:
    """The answer to one request, without any I/O."""
    path = target.split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return Reply(405, TEXT_TYPE, b"method not allowed\n")
    if path == b"/metrics":
        return Reply(200, CONTENT_TYPE_LATEST.encode(), generate_latest(registry))
    if path == b"/ready":
        ok, fields = ready()
        status = 200 if ok else 503
        return Reply(status, JSON_TYPE, json.dumps({"status": status, **fields}).encode())
    if path == b"/healthcheck":
        return Reply(200, TEXT_TYPE, b"OK\n")
    return Reply(404, TEXT_TYPE, b"not found: try /metrics, /ready or /healthcheck\n")


class MetricsServer:
    """Serves `respond()` over HTTP/1.1 on one listener."""

    def __init__(
        self, registry: CollectorRegistry, ready: ReadyCheck, limits: MetricsLimits = MetricsLimits(),
        refresh: Callable[[], Awaitable[None]] | None = None,
    ):
        self.registry = registry
        self.refresh = refresh  # awaited before each /metrics answer (the edge's supervisor scrapes its workers)
        self.ready = ready
        self.limits = limits
        self._slots = trio.CapacityLimiter(limits.max_connections)

    async def serve(self, listen: tuple[str, int], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen on `listen` until cancelled; `started()` reports the bound (host, port)."""
        host, port = listen
        try:
            listeners = await trio.open_tcp_listeners(port, host=host or None)
        except OSError as exc:
            raise ConfigError(f"cannot listen for metrics on {format_hostport(listen)}: {exc.strerror or exc}") from exc
        bound = listeners[0].socket.getsockname()[:2]
        log.info("metrics.listening address=%s", format_hostport(bound))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self.handle, listeners)
            task_status.started(bound)

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                self._slots.acquire_nowait()
            except trio.WouldBlock:
                log.warning("metrics.refused reason=too_many_connections limit=%d", self.limits.max_connections)
                return
            try:
                await self._session(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, h11.ProtocolError, OSError):
                pass  # the scraper went away, was too slow, or spoke nonsense: just close
            finally:
                self._slots.release()

    async def _session(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        for served in range(self.limits.max_requests):
            timeout = self.limits.request_timeout if served == 0 else self.limits.idle_timeout
            request = None  # stays None when the peer is silent for `timeout`
            with trio.move_on_after(timeout):
                try:
                    request = await _next_request(conn, stream, self.limits)
                except h11.RemoteProtocolError as exc:  # e.g. a head above max_header_bytes: 431
                    await _refuse(conn, stream, exc.error_status_hint, self.limits.send_timeout)
                    return
            if request is None or not isinstance(request, h11.Request):
                return
            if self.refresh is not None and request.target.split(b"?", 1)[0] == b"/metrics":
                await self.refresh()
            reply = respond(request.method, request.target, self.registry, self.ready)
            last = served + 1 == self.limits.max_requests
            headers = [
                (b"content-type", reply.content_type),
                (b"content-length", str(len(reply.body)).encode()),
                (b"cache-control", b"no-store"),
                (b"server", SERVER_HEADER),
            ]
            if last:
                headers.append((b"connection", b"close"))
            body = b"" if request.method == b"HEAD" else reply.body
            with trio.fail_after(self.limits.send_timeout):
                await stream.send_all(conn.send(h11.Response(status_code=reply.status, headers=headers)))
                if body:
                    await stream.send_all(conn.send(h11.Data(data=body)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return


async def _refuse(conn: h11.Connection, stream: trio.SocketStream, status: int, timeout: float) -> None:
    if conn.our_state is not h11.SEND_RESPONSE and conn.our_state is not h11.IDLE:
        return
    body = f"{status} bad request\n".encode()
    headers = [(b"content-type", TEXT_TYPE), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    with trio.move_on_after(timeout):
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))


async def _next_request(conn: h11.Connection, stream: trio.SocketStream, limits: MetricsLimits):
    """The next request (its body, if any, read and dropped); None when the peer closed.

    h11 bounds a head that arrives in pieces; one that arrives whole is measured here.
    """
    request = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                return None  # we take no bodies
            data = await stream.receive_some(limits.read_size)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            size = len(event.target) + sum(len(name) + len(value) + 4 for name, value in event.headers)
            if size > limits.max_header_bytes or len(event.headers) > MAX_HEADER_FIELDS:
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif event is h11.PAUSED or not isinstance(event, h11.Data):
            return None  # ConnectionClosed, or a pipelined request we answer after this one
