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


class Http1Exchange:
    """One request on an HTTP/1.1 connection."""

    def __init__(self, connection: Http1Connection, head: RequestHead) -> None:
        self._conn = connection
        self.head = head
        self.client = connection.client
        self.server = connection.server
        self.response_started = False

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

    async def serve(self, handle: Callable[[Http1Exchange], Awaitable[None]]) -> None:
        """Serve requests until the visitor or the protocol closes the connection."""
        first = True
        while True:
            timeout = self.limits.request_head_timeout if first else self.limits.keepalive_timeout
            first = False
            try:
                event = await self.next_event(timeout)
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc.error_status_hint, str(exc))
                return
            except trio.TooSlowError:
                return
            if not isinstance(event, h11.Request):
                return
            if problem := self._oversized(event):
                await self._refuse(431, problem)
                return
            exchange = Http1Exchange(self, self._request_head(event))
            try:
                await handle(exchange)
            except (h11.RemoteProtocolError, trio.TooSlowError) as exc:
                log.debug("http1.aborted client=%s error=%s", self.client[0], exc)
                return
            if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                self.h11.start_next_cycle()
            else:
                return

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


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
