"""HTTP/1.1 for visitors (h11): bytes ⇄ `Exchange`, with a keep-alive loop."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import h11
import trio

from shared.errors import ProtocolError
from shared.events import RequestHead, ResponseHead, end_to_end
from shared.pages import error_page

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Http1Limits:
    """Sizes and timers for visitor connections (seconds and bytes)."""

    max_header_bytes: int = 64 * 1024
    max_header_fields: int = 100
    request_head_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    body_idle_timeout: float = 60.0
    send_timeout: float = 60.0
    read_size: int = 64 * 1024
    max_discard_bytes: int = 64 * 1024  # unread request body drained to keep a connection alive


class Http1Exchange:
    """One request on an HTTP/1.1 connection."""

    def __init__(self, connection: Http1Connection, head: RequestHead) -> None:
        self._conn = connection
        self.head = head
        self.client = connection.client
        self.server = connection.server
        self.response_started = False
        self.upgrade = _upgrade_token(head)  # b"websocket", b"burrow-tcp", … or None

    async def receive_body(self) -> bytes:
        h11_conn = self._conn.h11
        if h11_conn.their_state is not h11.SEND_BODY:
            return b""
        if h11_conn.they_are_waiting_for_100_continue:
            await self._conn.send(h11.InformationalResponse(status_code=100, headers=[]))
        event = await self._conn.next_event(self._conn.limits.body_idle_timeout)
        if isinstance(event, h11.Data):
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
        await self._conn.send(response)

    async def send_body(self, data: bytes) -> None:
        if data:
            await self._conn.send(h11.Data(data=data))

    async def end(self) -> None:
        await self._conn.send(h11.EndOfMessage())

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
    ) -> None:
        self.stream = stream
        self.client = client
        self.server = server
        self.limits = limits
        self.scheme = scheme
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self.switched = False  # a 101 handed the socket to a byte relay
        self.closing = False  # the edge drains: answer what is in progress with `Connection: close`
        self._between_requests = trio.CancelScope()

    def drain(self) -> None:
        """The edge is shutting down: the response in progress carries `Connection: close`
        (then the connection ends); a connection waiting for its next request closes now."""
        self.closing = True
        self._between_requests.cancel()

    async def serve(self, handle: Callable[[Http1Exchange], Awaitable[None]]) -> None:
        """Serve requests until the visitor or the protocol closes the connection."""
        first = True
        while True:
            timeout = self.limits.request_head_timeout if first else self.limits.keepalive_timeout
            first = False
            try:
                with self._between_requests:
                    event = await self.next_event(timeout)
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc.error_status_hint, str(exc))
                return
            except trio.TooSlowError:
                return
            if self._between_requests.cancelled_caught:
                return
            self._between_requests = trio.CancelScope()
            if not isinstance(event, h11.Request):
                return
            if problem := self._oversized(event):
                await self._refuse(431, problem)
                return
            exchange = Http1Exchange(self, self._request_head(event))
            try:
                await handle(exchange)
                await self._discard_unread_body(exchange)
            except (h11.RemoteProtocolError, trio.TooSlowError) as exc:
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

    def _oversized(self, event: h11.Request) -> str | None:
        if len(event.headers) > self.limits.max_header_fields:
            return f"more than {self.limits.max_header_fields} header fields"
        size = len(event.target) + sum(len(name) + len(value) + 4 for name, value in event.headers)
        if size > self.limits.max_header_bytes:
            return f"request head larger than {self.limits.max_header_bytes} bytes"
        return None

    def _request_head(self, event: h11.Request) -> RequestHead:
        headers = tuple((bytes(name), bytes(value)) for name, value in event.headers)
        host = next((value for name, value in headers if name == b"host"), b"")
        has_body = any(
            (name == b"transfer-encoding") or (name == b"content-length" and value.strip() != b"0")
            for name, value in headers
        )
        return RequestHead(
            method=bytes(event.method),
            target=bytes(event.target),
            authority=host,
            scheme=self.scheme,
            headers=headers,
            has_body=has_body,
        )

    async def next_event(self, timeout: float) -> h11.Event:
        with trio.fail_after(timeout):
            while True:
                event = self.h11.next_event()
                if event is not h11.NEED_DATA:
                    return event
                data = await self.stream.receive_some(self.limits.read_size)
                self.h11.receive_data(data)

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            with trio.fail_after(self.limits.send_timeout):
                await self.stream.send_all(data)

    async def _refuse(self, status: int, reason: str) -> None:
        """Answer a malformed request with a page, if the protocol still allows one."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        head, body = error_page(status, "edge", reason)
        try:
            await self.send(h11.Response(status_code=status, headers=list(head.headers), reason=_reason(status)))
            await self.send(h11.Data(data=body))
            await self.send(h11.EndOfMessage())
        except (h11.LocalProtocolError, trio.BrokenResourceError, trio.TooSlowError):
            pass


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
