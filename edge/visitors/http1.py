"""HTTP/1.1 for visitors (h11): bytes ⇄ `Exchange`, with a keep-alive loop."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import h11
import trio

from edge.dns.zone import normalize_host
from edge.visitors.http1_chunks import ChunkScanner
from edge.visitors.http1_guard import CheckedHead, HeadLimits, HeadScanner, Refused, check_scanned_head
from shared.aio import receive_records
from shared.errors import ProtocolError
from shared.events import RequestHead, ResponseHead, end_to_end
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
    read_size: int = 64 * 1024
    max_discard_bytes: int = 64 * 1024  # unread request body drained to keep a connection alive


MAX_HELD = 64 * 1024  # response bytes `Http1Exchange.hold()` keeps back at most


class Http1Exchange:
    """One request on an HTTP/1.1 connection."""

    def __init__(self, connection: Http1Connection, head: RequestHead) -> None:
        self._conn = connection
        self.head = head
        self.client = connection.client
        self.server = connection.server
        self.response_started = False
        self.upgrade = _upgrade_token(head)  # b"websocket", b"burrow-tcp", … or None
        self._body_waited = 0.0  # seconds spent waiting for body bytes
        self._body_bytes = 0
        self._held: list[bytes] | None = None  # the response so far, while `hold()` is in effect
        self._held_size = 0

    def hold(self) -> None:
        """Keep the response in memory until `end()` sends it in one write (for a caller
        that has all of it at hand: no wait between its pieces)."""
        self._held, self._held_size = [], 0

    async def receive_body(self) -> bytes:
        h11_conn = self._conn.h11
        if h11_conn.their_state is not h11.SEND_BODY:
            return b""
        if h11_conn.they_are_waiting_for_100_continue:
            await self._conn.send(h11.InformationalResponse(status_code=100, headers=[]))
        event = h11_conn.next_event()  # e.g. the end of a bodyless request: no wait to time
        if event is h11.NEED_DATA:
            limits = self._conn.limits
            allowed = limits.body_rate_grace + self._body_bytes / limits.body_min_rate - self._body_waited
            started = trio.current_time()
            try:
                event = await self._conn.next_event(max(0.0, min(limits.body_idle_timeout, allowed)))
            finally:
                self._body_waited += trio.current_time() - started
        if isinstance(event, h11.Data):
            self._body_bytes += len(event.data)
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            return b""
        raise h11.RemoteProtocolError("request body ended early")

    async def send_response(self, head: ResponseHead) -> None:
        headers = [(name, value) for name, value in end_to_end(head.headers)]
        if self._conn.closing:
            headers.append((b"connection", b"close"))
        try:
            response = h11.Response(status_code=head.status, headers=headers, reason=_reason(head.status))
        except h11.LocalProtocolError as exc:
            raise ProtocolError(f"invalid response head from the tunnel: {exc}") from exc
        self.response_started = True
        await self._send(response)

    async def send_body(self, data: bytes) -> None:
        """Send body bytes; none go out for a HEAD request (the edge's own pages and API
        answers are generated as for GET; Content-Length tells their size)."""
        if data and self.head.method != b"HEAD":
            await self._send(h11.Data(data=data))

    async def end(self) -> None:
        await self._send(h11.EndOfMessage())
        await self.release()

    async def release(self) -> None:
        """Write what `hold()` kept back, and hold no more."""
        if self._held is not None:
            data, self._held = b"".join(self._held), None
            await self._conn.send_bytes(data)

    async def _send(self, event: h11.Event) -> None:
        if self._held is None:
            await self._conn.send(event)
        elif data := self._conn.h11.send(event):
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size > MAX_HELD:  # a large response is written as it comes
                await self.release()

    async def switch_protocols(self, head: ResponseHead) -> tuple[trio.abc.Stream, bytes]:
        """Answer 101 with `head`'s headers (Upgrade and Connection kept); return the raw
        visitor stream and the bytes h11 had already read past the request."""
        conn = self._conn
        while conn.h11.their_state is h11.SEND_BODY:  # the (empty) body of the upgrade request
            await conn.next_event(conn.limits.body_idle_timeout)
        headers = [(name, value) for name, value in head.headers if name not in _NOT_IN_101]
        self.response_started = True
        await conn.send(h11.InformationalResponse(status_code=101, headers=headers, reason=b"Switching Protocols"))
        data, _closed = conn.h11.trailing_data
        conn.switched = True
        return conn.stream, bytes(data)

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
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self.switched = False  # a 101 handed the socket to a byte relay
        self.closing = False  # the edge drains: answer what is in progress with `Connection: close`
        self._between_requests = trio.CancelScope(relative_deadline=limits.request_head_timeout)
        self._head_limits = HeadLimits(limits.max_request_line, limits.max_header_bytes, limits.max_header_fields)
        self._chunks: ChunkScanner | None = None  # the strict check of a chunked request body

    def drain(self) -> None:
        """The edge is shutting down: the response in progress carries `Connection: close`
        (then the connection ends); a connection waiting for its next request closes now."""
        self.closing = True
        self._between_requests.cancel()

    async def serve(self, handle: Callable[[Http1Exchange], Awaitable[None]]) -> None:
        """Serve requests until the visitor or the protocol closes the connection."""
        while True:
            try:
                with self._between_requests as waiting:  # the idle deadline; a drain cancels it
                    request = await self._next_request(waiting)
            except Refused as exc:
                log.info("http1.refused client=%s status=%d reason=%s", self.client[0], exc.status, exc.reason)
                await self._refuse(exc.status, exc.reason)
                return
            if waiting.cancelled_caught:
                if not self.closing:
                    log.debug("http1.head_timeout client=%s", self.client[0])
                return
            self._between_requests = trio.CancelScope(relative_deadline=self.limits.keepalive_timeout)
            if request is None:
                return
            exchange = Http1Exchange(self, request)
            try:
                await handle(exchange)
                await self._discard_unread_body(exchange)
            except (Refused, h11.RemoteProtocolError) as exc:  # bad body framing
                log.info("http1.bad_body client=%s reason=%s", self.client[0], exc)
                if not exchange.response_started:
                    await self._refuse(400, str(exc))
                return
            except trio.TooSlowError as exc:
                log.debug("http1.aborted client=%s error=%s", self.client[0], exc)
                return
            if self.switched:
                return
            if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                self.h11.start_next_cycle()
            else:
                return

    async def _discard_unread_body(self, exchange: Http1Exchange) -> None:
        """Read what is left of a request the handler answered without reading all of it
        (e.g. the end of a bodyless GET), so the connection can be kept alive; a large
        unread body closes the connection instead."""
        if self.h11.our_state is not h11.DONE:
            return
        discarded = 0
        while discarded <= self.limits.max_discard_bytes and self.h11.their_state is h11.SEND_BODY:
            discarded += len(await exchange.receive_body())

    async def _next_request(self, waiting: trio.CancelScope) -> RequestHead | None:
        """The next request head: its first byte within the deadline of `waiting` (the
        idle timeout), the rest within the head timeout, checked by `http1_guard` before
        h11 parses it. None when the visitor closed the connection."""
        head_limits = self._head_limits
        self._chunks = None
        while not (buffered := self.h11.trailing_data[0]):  # (a copy of h11's buffer)
            if not await self._receive():
                return None
        scanner = HeadScanner(head_limits)
        head = scanner.feed(buffered)
        if head is None:
            waiting.deadline = trio.current_time() + self.limits.request_head_timeout
            while head is None:
                if not (data := await self._receive()):
                    return None
                head = scanner.feed(data)
        checked = check_scanned_head(head, head_limits)
        if self.sni is not None and normalize_host(checked.host.decode("ascii")) != self.sni:
            raise Refused(421, "the Host does not match the TLS server name")
        try:
            event = self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise Refused(exc.error_status_hint, str(exc)) from exc
        if not isinstance(event, h11.Request):
            raise Refused(400, "malformed request head")
        if any(name == b"transfer-encoding" for name, _ in checked.headers):  # `chunked`, as checked
            self._chunks = ChunkScanner(self.limits.max_header_bytes)
            self._chunks.feed(self.h11.trailing_data[0])  # the body bytes that came with the head
        return self._request_head(event, checked)

    async def _receive(self) -> bytes:
        data = await receive_records(self.stream, self.limits.read_size)
        if self._chunks is not None:
            self._chunks.feed(data)
        self.h11.receive_data(data)
        return data

    def _request_head(self, event: h11.Request, checked: CheckedHead) -> RequestHead:
        headers = checked.headers  # the fields h11 parsed too, as the guard split them
        host = checked.host
        has_body = any(
            (name == b"transfer-encoding") or (name == b"content-length" and value.strip() != b"0")
            for name, value in headers
        )
        return RequestHead(
            method=bytes(event.method),
            target=checked.target,
            authority=host,
            scheme=self.scheme,
            headers=headers,
            has_body=has_body,
        )

    async def next_event(self, timeout: float) -> h11.Event:
        event = self.h11.next_event()  # often already parsed: no deadline to set up
        if event is not h11.NEED_DATA:
            return event
        with _deadline(timeout):  # returns unless the deadline passed
            while event is h11.NEED_DATA:
                await self._receive()
                event = self.h11.next_event()
            return event
        raise trio.TooSlowError

    async def send(self, event: h11.Event) -> None:
        await self.send_bytes(self.h11.send(event))

    async def send_bytes(self, data: bytes | None) -> None:
        """Write what h11 produced (nothing for None or b"")."""
        if data:
            with _deadline(self.limits.send_timeout) as scope:
                await self.stream.send_all(data)
            if scope.cancelled_caught:
                raise trio.TooSlowError

    async def _refuse(self, status: int, reason: str) -> None:
        """Answer a refused request head with a page and `Connection: close`. Written
        without h11, which has not (or not validly) parsed the request."""
        head, body = error_page(status, "edge", reason)
        lines = [b"HTTP/1.1 %d %s" % (status, _reason(status))]
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


def _upgrade_token(head: RequestHead) -> bytes | None:
    """The protocol a request asks to switch to (`Connection: upgrade` + `Upgrade: X`), or None."""
    connection = {token.strip().lower() for token in (head.header(b"connection") or b"").split(b",")}
    upgrade = head.header(b"upgrade")
    if b"upgrade" not in connection or not upgrade or head.has_body:
        return None
    return upgrade.strip().lower()


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
