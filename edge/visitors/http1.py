"""HTTP/1.1 for visitors: bytes ⇄ `Exchange`, with a keep-alive loop (the bytes parsed by
`http1_parser`, llhttp between strict checks; answers written by `http1_response`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from edge.dns.zone import normalize_host
from edge.visitors.http1_guard import CheckedHead, HeadLimits, Refused
from edge.visitors.http1_parser import RequestParser
from edge.visitors.http1_response import Response, informational
from edge.visitors.idle_timers import IdleTimer, IdleTimers
from shared.errors import ProtocolError
from shared.events import RequestHead, ResponseHead, end_to_end
from shared.http1_wire import reason
from shared.pages import error_page

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Http1Limits:
    """Sizes and timers for visitor connections (seconds and bytes).

    The head timeout runs from the first byte of a request to its blank line; the
    keep-alive timeout is the wait for that first byte. A request body must average
    `body_min_rate` bytes/s of the time the edge spends waiting for it, after
    `body_rate_grace` seconds (slow-drip bodies), and no read may wait longer than
    `body_idle_timeout`."""

    max_request_line: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    max_header_fields: int = 100
    request_head_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    body_idle_timeout: float = 60.0
    body_min_rate: float = 240.0
    body_rate_grace: float = 5.0
    send_timeout: float = 60.0
    read_size: int = 256 * 1024  # at most, per read (over TLS: the records already received, shared.tls_socket)
    max_discard_bytes: int = 64 * 1024  # unread request body drained to keep a connection alive


MAX_HELD = 64 * 1024  # response bytes `Http1Exchange.hold()` keeps back at most


class Http1Exchange:
    """One request on an HTTP/1.1 connection."""

    def __init__(self, connection: Http1Connection, head: RequestHead, http10: bool = False) -> None:
        self._conn = connection
        self.head = head
        self.client = connection.client
        self.server = connection.server
        self.response_started = False
        self.upgrade = _upgrade_token(head)  # b"websocket", b"burrow-tcp", … or None
        keep_alive = not http10 and b"close" not in _tokens(head.header(b"connection"))
        self._response = Response(head.method, http10, keep_alive)
        self._continue = head.has_body and not http10 and b"100-continue" in _tokens(head.header(b"expect"))
        self._body_waited = 0.0  # seconds spent waiting for body bytes
        self._body_bytes = 0
        self._held: list[bytes] | None = None  # the response so far, while `hold()` is in effect
        self._held_size = 0

    @property
    def reusable(self) -> bool:
        """The response ended and the connection may serve another request."""
        return self._response.ended and self._response.keep_alive

    def hold(self) -> None:
        """Keep the response in memory until `end()` sends it in one write (for a caller
        that has all of it at hand: no wait between its pieces)."""
        self._held, self._held_size = [], 0

    async def receive_body(self) -> bytes:
        conn = self._conn
        data = conn.reader.take_body()  # e.g. the end of a bodyless request: no wait to time
        if data is None:
            if self._continue:
                self._continue = False
                await conn.send_bytes(informational(100, ()))
            limits = conn.limits
            allowed = limits.body_rate_grace + self._body_bytes / limits.body_min_rate - self._body_waited
            started = trio.current_time()
            try:
                data = await conn.next_body(max(0.0, min(limits.body_idle_timeout, allowed)))
            finally:
                self._body_waited += trio.current_time() - started
        self._continue = False
        self._body_bytes += len(data)
        return data

    async def send_response(self, head: ResponseHead) -> None:
        data = self._framed(self._response.head, head.status, end_to_end(head.headers), self._conn.closing)
        self.response_started = True
        self._continue = False
        await self._send(data)

    async def send_body(self, data: bytes) -> None:
        """Send body bytes; none go out for a HEAD request (the edge's own pages and API
        answers are generated as for GET; Content-Length tells their size)."""
        if data and self.head.method != b"HEAD":
            await self._send(self._framed(self._response.body, data))

    async def end(self) -> None:
        await self._send(self._framed(self._response.end))
        await self.release()

    async def release(self) -> None:
        """Write what `hold()` kept back, and hold no more."""
        if self._held is not None:
            data, self._held = b"".join(self._held), None
            await self._conn.send_bytes(data)

    def _framed(self, write, *args) -> bytes:
        try:
            return write(*args)
        except ValueError as exc:
            raise ProtocolError(f"invalid response from the tunnel: {exc}") from exc

    async def _send(self, data: bytes) -> None:
        if self._held is None:
            await self._conn.send_bytes(data)
        elif data:
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size > MAX_HELD:  # a large response is written as it comes
                await self.release()

    async def switch_protocols(self, head: ResponseHead) -> tuple[trio.abc.Stream, bytes]:
        """Answer 101 with `head`'s headers (Upgrade and Connection kept); return the raw
        visitor stream (over TLS, one that half-closes: `shared.tls_socket`) and the bytes
        already read past the request."""
        conn = self._conn
        headers = tuple((name, value) for name, value in head.headers if name not in _NOT_IN_101)
        data = self._framed(informational, 101, headers)
        self.response_started = True
        await conn.send_bytes(data)
        conn.switched = True
        return conn.stream, conn.reader.after

    # Trailers do not cross HTTP/1.1 here: request trailers are not collected, and
    # response trailers are dropped (gRPC needs HTTP/2 anyway).
    request_trailers = ()

    async def send_trailers(self, headers) -> None:
        await self.end()


class Http1Connection:
    """The keep-alive loop over one visitor connection."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        client: tuple[str, int],
        server: tuple[str, int],
        limits: Http1Limits,
        scheme: bytes = b"https",
        sni: str | None = None,
    ) -> None:
        self.stream = stream
        self.client = client
        self.server = server
        self.limits = limits
        self.scheme = scheme
        self.sni = sni  # the TLS server name the visitor asked for; Host must match it
        head_limits = HeadLimits(limits.max_request_line, limits.max_header_bytes, limits.max_header_fields)
        self.reader = RequestParser(head_limits, limits.max_header_bytes)
        self._send_nowait = getattr(stream, "send_nowait", None)  # shared.tls_socket's
        self.switched = False  # a 101 handed the socket to a byte relay
        self.closing = False  # the edge drains: answer what is in progress with `Connection: close`
        self._idle = trio.CancelScope()  # cancelled by the idle timer or a drain, between requests only
        self._waiting = False  # between requests: a drain or the idle timer may close the connection now
        self._timers = IdleTimers.current()
        self._timer = IdleTimer(self._expire)

    def drain(self) -> None:
        """The edge is shutting down: the response in progress carries `Connection: close`
        (then the connection ends); a connection waiting for its next request closes now."""
        self.closing = True
        self._expire()

    def _expire(self) -> None:
        if self._waiting:
            self._idle.cancel()

    async def serve(self, handle: Callable[[Http1Exchange], Awaitable[None]]) -> None:
        """Serve requests until the visitor or the protocol closes the connection.

        One cancel scope spans the connection; the idle timer cancels it when the keep-alive
        (or head) deadline passes while a request head is awaited. Moving that deadline is a
        float store (edge.visitors.idle_timers), where a scope per wait cost ~25 µs a request."""
        timers, timer = self._timers, self._timer
        try:
            with self._idle as idle:
                timers.watch(timer, trio.current_time() + self.limits.request_head_timeout)
                while True:
                    self._waiting = True
                    try:
                        request = await self._next_request()
                    except Refused as exc:
                        self._waiting = False
                        timers.set(timer, math.inf)
                        log.info("http1.refused client=%s status=%d reason=%s", self.client[0], exc.status, exc.reason)
                        await self._refuse(exc.status, exc.reason)
                        return
                    if request is None or idle.cancel_called:  # closed, or the deadline passed as the head came: the timeout wins
                        return
                    self._waiting = False
                    timers.set(timer, math.inf)
                    checked = self.reader.head
                    exchange = Http1Exchange(self, request, checked is not None and checked.http10)
                    try:
                        await handle(exchange)
                        await self._discard_unread_body(exchange)
                    except Refused as exc:  # bad body framing
                        log.info("http1.bad_body client=%s reason=%s", self.client[0], exc)
                        if not exchange.response_started:
                            await self._refuse(400, str(exc))
                        return
                    except trio.TooSlowError as slow:  # (a name of its own: compiled, `exc` is a `Refused`)
                        log.debug("http1.aborted client=%s error=%s", self.client[0], slow)
                        return
                    if self.switched or self.closing or not (exchange.reusable and self.reader.body_done):
                        return
                    timers.set(timer, trio.current_time() + self.limits.keepalive_timeout)
        finally:
            timers.end(timer)
        if idle.cancelled_caught and not self.closing:
            log.debug("http1.head_timeout client=%s", self.client[0])

    async def _discard_unread_body(self, exchange: Http1Exchange) -> None:
        """Read what is left of a request the handler answered without reading all of it
        (e.g. the end of a bodyless GET), so the connection can be kept alive; a large
        unread body closes the connection instead."""
        if not exchange.reusable:
            return
        discarded = 0
        while discarded <= self.limits.max_discard_bytes and not self.reader.body_done:
            discarded += len(await exchange.receive_body())

    async def _next_request(self) -> RequestHead | None:
        """The next request head: its first byte within the idle timer's deadline (the
        keep-alive timeout), the rest within the head timeout. None when the visitor closed
        the connection."""
        reader = self.reader
        if reader.head is not None:
            reader.next_request()  # the bytes after the last request may hold (part of) it
        while not reader.started:
            if not await self._receive():
                return None
        if reader.head is None:
            self._timers.set(self._timer, trio.current_time() + self.limits.request_head_timeout)
            while reader.head is None:
                if not await self._receive():
                    return None
        checked = reader.head
        if self.sni is not None and normalize_host(checked.host.decode("ascii")) != self.sni:
            raise Refused(421, "the Host does not match the TLS server name")
        return self._request_head(checked)

    async def _receive(self) -> bytes | bytearray:
        data = await self.stream.receive_some(self.limits.read_size)
        if data:
            self.reader.feed(data)
        return data

    def _request_head(self, checked: CheckedHead) -> RequestHead:
        return RequestHead(
            method=checked.method,
            target=checked.target,
            authority=checked.host,
            scheme=self.scheme,
            headers=checked.headers,
            has_body=checked.length != 0,
        )

    async def next_body(self, timeout: float) -> bytes:
        """Body bytes of the current request (b"" at its end), within `timeout`."""
        with _deadline(timeout):  # returns unless the deadline passed
            while (data := self.reader.take_body()) is None:
                if not await self._receive():
                    raise Refused(400, "request body ended early")
            return data
        raise trio.TooSlowError

    async def send_bytes(self, data: bytes | memoryview) -> None:
        """Write `data` (nothing for b""): what the socket takes at once without a wait (over
        TLS: no timer, no checkpoint; the loop's next read is one), the rest within the send timeout."""
        if data and self._send_nowait is not None and (sent := self._send_nowait(data)):
            data = memoryview(data)[sent:]  # no copy of a large rest
        if data:
            with _deadline(self.limits.send_timeout) as scope:
                await self.stream.send_all(data)
            if scope.cancelled_caught:
                raise trio.TooSlowError

    async def _refuse(self, status: int, why: str) -> None:
        """Answer a refused request head with a page and `Connection: close`."""
        head, body = error_page(status, "edge", why)
        lines = [b"HTTP/1.1 %d %s" % (status, reason(status))]
        lines += [name + b": " + value for name, value in head.headers]
        lines += [b"connection: close", b"", b""]
        try:
            with trio.fail_after(self.limits.send_timeout):
                await self.stream.send_all(b"\r\n".join(lines) + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass


def _deadline(seconds: float) -> trio.CancelScope:
    """`trio.fail_after` without its generator (it runs several times per request): the
    caller raises `trio.TooSlowError` when the scope's `cancelled_caught`."""
    return trio.CancelScope(relative_deadline=seconds)


_NOT_IN_101 = frozenset({b"content-length", b"transfer-encoding", b"keep-alive"})


def _tokens(value: bytes | None) -> set[bytes]:
    """The lower-case tokens of a comma-separated header value."""
    return {token.strip().lower() for token in value.split(b",")} if value else set()


def _upgrade_token(head: RequestHead) -> bytes | None:
    """The protocol a request asks to switch to (`Connection: upgrade` + `Upgrade: X`), or None."""
    upgrade = head.header(b"upgrade")
    if not upgrade or head.has_body or b"upgrade" not in _tokens(head.header(b"connection")):
        return None
    return upgrade.strip().lower()
