"""One visitor request: the admin API, a tunnel, or an error page.

Eyeball adapters (HTTP/1.1 now, HTTP/2 later) present each request as an
`Exchange`; `Proxy.handle` decides where it goes and streams the bodies.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import replace
from typing import Any, Protocol, cast

import trio

from edge.dns.zone import normalize_host
from edge.routing.asgi import call_asgi
from edge.routing.forwarded_headers import forwardable
from edge.routing.metrics import EdgeMetrics
from edge.routing.router import BUSY_RETRY_AFTER, Router, TunnelBusy
from shared.aio import single_errors
from shared.errors import BurrowError, TunnelUnavailable
from shared.events import Headers, RequestHead, ResponseHead
from shared.logs import ACCESS_LOGGER, log_access
from shared.pages import error_page
from shared.private_flows import PRIVATE_UPGRADE
from shared.protocol import KIND_UPGRADE
from shared.relay import relay
from shared.tunnel_stream import StreamRefused, TunnelStream

log = logging.getLogger(__name__)
access_log = logging.getLogger(ACCESS_LOGGER)  # one line a request; see shared/logs.py

MAX_API_BODY = 64 * 1024
REQUEST_ID = b"burrow-request-id"
CONNECTING_IP = b"burrow-connecting-ip"
CONNECTING_PORT = b"burrow-connecting-port"
RETRY_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
MAX_RETRIES = 2  # further sessions tried for a request no session took
VISITOR_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
QUICK_TUNNELS_LABEL = "quick-tunnels"  # every quick tunnel's requests: their random names would crowd out the others


class Exchange(Protocol):
    """One visitor request as an eyeball adapter presents it.

    An adapter may also offer `hold()` (keep the response back until `end()`, for a
    caller that has all of it at hand) and `release()` (write what is held now)."""

    head: RequestHead
    client: tuple[str, int]
    server: tuple[str, int]
    response_started: bool
    request_trailers: Headers  # complete once receive_body returned b""

    async def receive_body(self) -> bytes: ...  # b"" at the end

    async def send_response(self, head: ResponseHead) -> None: ...

    async def send_body(self, data: bytes) -> None: ...

    async def end(self) -> None: ...

    async def send_trailers(self, headers: Headers) -> None: ...  # ends the response


class MeteredExchange:
    """An exchange that counts what passes through it, for the request metrics."""

    def __init__(self, inner: Exchange) -> None:
        self._inner = inner
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.request_id = ""

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    async def receive_body(self) -> bytes:
        data = await self._inner.receive_body()
        self.bytes_in += len(data)
        return data

    async def send_response(self, head: ResponseHead) -> None:
        await self._inner.send_response(head)
        self.status = head.status

    async def send_body(self, data: bytes) -> None:
        await self._inner.send_body(data)
        self.bytes_out += len(data)

    async def switch_protocols(self, head: ResponseHead):
        switched = await cast(Any, self._inner).switch_protocols(head)
        self.status = 101  # the origin's 101, also when HTTP/2 tells the visitor 200 (RFC 8441)
        return switched


class BodyTooLarge(BurrowError):
    """The visitor's request body outgrew the hostname's `max_body`."""


class LimitedBody:
    """An exchange whose request body may not exceed `limit` bytes (the hostname's `--max-body`)."""

    def __init__(self, inner: Exchange, limit: int) -> None:
        self._inner = inner
        self.limit = limit
        self.received = 0

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    async def receive_body(self) -> bytes:
        data = await self._inner.receive_body()
        self.received += len(data)
        if self.received > self.limit:
            raise BodyTooLarge(f"request body larger than {self.limit} bytes")
        return data


def declared_too_large(head: RequestHead, limit: int) -> bool:
    length = head.header(b"content-length")
    return length is not None and length.isdigit() and int(length) > limit


class Proxy:
    """Routes visitor requests by Host."""

    def __init__(
        self, router: Router, api_app: object, api_hosts: frozenset[str], metrics: EdgeMetrics | None = None, gate=None,
        private=None,
    ) -> None:
        self.gate = gate  # edge.access.gate.Gate: hostname policies, None for none
        self.private = private  # edge.access.private.PrivateNetworks: `burrow-private` upgrades to the API hosts
        self.router = router
        self.api_app = api_app
        self.api_hosts = api_hosts
        self.metrics = metrics
        self.peers: Any = None  # edge.workers.peers.Peers: other workers' sessions, for a tunnel with none here

    def serves(self, host: str) -> bool:
        """True for a (normalized) hostname the edge answers over HTTPS: its API or a routed one."""
        return host in self.api_hosts or self.router.tunnel_for(host) is not None

    async def handle(self, exchange: Exchange) -> None:
        host = normalize_host(exchange.head.authority.decode("latin-1"))
        if host in self.api_hosts and self.private is not None and getattr(exchange, "upgrade", None) == PRIVATE_UPGRADE:
            await self.private.handle(exchange)  # a private-network flow: its own access log line and metrics
            return
        if self.metrics is None and not access_log.isEnabledFor(logging.INFO):
            await self._route(exchange, host)
            return
        started = time.monotonic()
        metered = MeteredExchange(exchange)
        metered.request_id = request_id(exchange.head)
        try:
            await self._route(metered, host)
        finally:
            duration = time.monotonic() - started
            tunnel_id = self.router.tunnel_for(host)  # after the request: the routes may have changed
            if self.metrics is not None:
                label = (QUICK_TUNNELS_LABEL if tunnel_id in self.router.limits else host) if tunnel_id else ""  # one for unrouted hosts
                self.metrics.observe_request(label, metered.status, duration, metered.bytes_in, metered.bytes_out)
            if access_log.isEnabledFor(logging.INFO):
                head = exchange.head
                fields = {
                    "host": host, "method": head.method.decode("latin-1"), "path": head.target.decode("latin-1"),
                    "status": metered.status, "bytes_in": metered.bytes_in, "bytes_out": metered.bytes_out,
                    "duration_ms": round(duration * 1000, 1), "client": exchange.client[0],
                    "tunnel": tunnel_id or "-", "request_id": metered.request_id,
                }
                log_access(access_log, fields)

    async def _route(self, exchange: Exchange, host: str) -> None:
        if host in self.api_hosts:
            await self._serve_api(exchange)
            return
        tunnel_id = self.router.tunnel_for(host)
        if tunnel_id is None:
            await send_page(exchange, 404, "edge", f"no tunnel serves {host}")
            return
        quick = self.router.limits.get(tunnel_id)  # a quick tunnel: no Access, its own limits
        gate = self.gate if quick is None else None
        if (admitted := await gate.admit(exchange, host) if gate else _unchanged) is None:
            return  # the gate answered: refused, or its login pages
        if (max_body := quick.max_body if quick else self.gate.max_body(host) if self.gate else None) is not None:
            if declared_too_large(exchange.head, max_body):
                await send_page(exchange, 413, "edge", f"the request body is larger than {host} accepts ({max_body} bytes)")
                return
            exchange = LimitedBody(exchange, max_body)
        try:
            send = forward_upgrade if getattr(exchange, "upgrade", None) else forward
            head = admitted(forwarded_head(exchange))
            if self.peers is not None and not self.router.count(tunnel_id):
                await self.peers.forward(exchange, tunnel_id, head, send)
            else:
                await pick_and_forward(exchange, self.router, tunnel_id, head, send)
        except BodyTooLarge:
            log.info("request.body_too_large host=%s limit=%d", host, max_body)
            if exchange.response_started:  # too late for a 413: end the visitor's connection (HTTP/1.1) or stream (HTTP/2)
                raise trio.BrokenResourceError(f"request body over the limit of {host}") from None
            await send_page(exchange, 413, "edge", f"the request body is larger than {host} accepts ({max_body} bytes)")
        except TunnelBusy as busy:  # (a name of its own: compiled, one name has one type)
            log.debug("request.busy host=%s", host)  # debug: a flood must not become a flood of log lines
            await send_page(exchange, busy.status, "edge", f"the tunnel for {host} is busy; retry", ((b"retry-after", str(BUSY_RETRY_AFTER).encode()),))
        except TunnelUnavailable:
            await send_page(exchange, 502, "edge", f"the tunnel for {host} has no connector")
        except BurrowError as exc:
            log.info("request.failed host=%s error=%s", host, exc)
            if exchange.response_started:
                raise
            await send_page(exchange, 502, "edge", f"the tunnel for {host} failed: {exc}")

    async def _serve_api(self, exchange: Exchange) -> None:
        body = bytearray()
        while chunk := await exchange.receive_body():
            body += chunk
            if len(body) > MAX_API_BODY:
                await send_page(exchange, 413, "edge", "request body too large")
                return
        head, data = await call_asgi(
            self.api_app, exchange.head, bytes(body), exchange.client, exchange.server
        )
        _hold(exchange)
        await exchange.send_response(head)
        if data:
            await exchange.send_body(data)
        await exchange.end()


def _hold(exchange: Exchange) -> bool:
    """Have the exchange write the response in one go, if it can (the caller has all of it)."""
    if hold := getattr(exchange, "hold", None):
        hold()
    return hold is not None


def _unchanged(head: RequestHead) -> RequestHead:
    return head


def request_id(head: RequestHead) -> str:
    """The visitor's `Burrow-Request-Id` if it is a plain token (≤ 64 of [A-Za-z0-9._-]), else a new one."""
    sent = next((value for name, value in head.headers if name == REQUEST_ID), b"")
    return sent.decode() if VISITOR_REQUEST_ID.fullmatch(sent) else os.urandom(16).hex()


def forwarded_head(exchange: Exchange) -> RequestHead:
    """The request as the origin should see it: visitor identity added, spoofs dropped."""
    head = exchange.head
    client_ip, client_port = exchange.client[0].encode(), str(exchange.client[1]).encode()
    headers = forwardable(head.headers, upgrade=bool(getattr(exchange, "upgrade", None))) + (
        (b"x-forwarded-for", client_ip),
        (b"x-forwarded-proto", head.scheme),
        (CONNECTING_IP, client_ip),
        (CONNECTING_PORT, client_port),
        (REQUEST_ID, (getattr(exchange, "request_id", "") or request_id(head)).encode()),
    )
    return RequestHead(head.method, head.target, head.authority, head.scheme, headers, head.has_body)


async def pick_and_forward(exchange: Exchange, router: Router, tunnel_id: str, head: RequestHead, send) -> None:
    """`send` the exchange over the tunnel's least-loaded session. A request that may be
    replayed (`replayable`) whose stream the session provably never took is sent again on
    another session, at most `MAX_RETRIES` times; everything else fails as it failed."""
    tried: tuple = ()
    while True:
        connection = router.pick(tunnel_id, avoid=tried)
        try:
            await send(exchange, connection, head)
            return
        except StreamRefused as exc:
            if not replayable(head) or exchange.response_started or len(tried) >= MAX_RETRIES:
                raise
            tried += (connection,)
            log.info("request.retried host=%s attempt=%d error=%s", head.authority.decode("latin-1"), len(tried), exc)
            if not any(conn not in tried and conn.accepting for conn in router.sessions(tunnel_id)):
                raise


def replayable(head: RequestHead) -> bool:
    """DESIGN §6: only idempotent methods without a body are ever sent twice (never POST/PUT/PATCH)."""
    return head.method in RETRY_METHODS and not head.has_body


async def forward(exchange: Exchange, connection, head: RequestHead) -> None:
    """Carry one exchange over a new tunnel stream, bodies streamed both ways."""
    async with await connection.open_stream(head) as stream:
        if not head.has_body:  # no upload to run beside the download: no nursery
            await _download(exchange, stream)
            return
        with single_errors():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_upload, exchange, stream)
                await _download(exchange, stream)
                nursery.cancel_scope.cancel()


async def _download(exchange: Exchange, stream: TunnelStream) -> None:
    response = await stream.receive_response()
    if stream.remote_closed and _hold(exchange):  # the whole response is queued: one write
        try:
            await _pass_on(exchange, stream, response)
        except Exception:
            await cast(Any, exchange).release()  # as without `hold`: the response up to the failure
            raise
    else:
        await _pass_on(exchange, stream, response)


async def _pass_on(exchange: Exchange, stream: TunnelStream, response: ResponseHead) -> None:
    await exchange.send_response(response)
    while chunk := await stream.receive():
        await exchange.send_body(chunk)
    if stream.trailers:
        await exchange.send_trailers(stream.trailers)
    else:
        await exchange.end()


async def _upload(exchange: Exchange, stream: TunnelStream) -> None:
    while chunk := await exchange.receive_body():
        await stream.send(chunk)
    if exchange.request_trailers:
        await stream.send_trailers(exchange.request_trailers)
    else:
        await stream.end()


async def forward_upgrade(exchange: Exchange, connection, head: RequestHead) -> None:
    """An HTTP/1.1 Upgrade (WebSocket, `burrow-tcp`): on the origin's 101 the visitor's
    socket and an upgrade stream become one byte pipe; any other answer is passed on."""
    async with await connection.open_stream(head, KIND_UPGRADE) as stream:
        response = await stream.receive_response()
        if response.status != 101:
            await exchange.send_response(response)
            while chunk := await stream.receive():
                await exchange.send_body(chunk)
            await exchange.end()
            await stream.end()
            return
        upgradable = cast(Any, exchange)  # an adapter's exchange that asked to upgrade
        raw, first = await upgradable.switch_protocols(response)
        log.debug("upgrade.switched host=%s protocol=%s", head.authority.decode("latin-1"), upgradable.upgrade)
        await relay(raw, stream, first)


async def send_page(exchange: Exchange, status: int, source: str, message: str, headers: Headers = ()) -> None:
    head, body = error_page(status, source, message)
    _hold(exchange)
    await exchange.send_response(replace(head, headers=head.headers + headers) if headers else head)
    await exchange.send_body(body)
    await exchange.end()
