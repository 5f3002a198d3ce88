"""Forward one tunnel stream to an HTTP origin (HTTP/1.1 on the wire: `http1_codec`),
bodies streamed both ways.

Connections to each origin are kept alive and reused (not with proxyProtocol: each
such connection carries one visitor's address); a request that failed on a
reused connection before any response byte is retried once on a fresh one, but
only when it is safe (a GET/HEAD/OPTIONS without a body).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import trio

from connector.ingress.origin_request import OriginRequest
from connector.origins.connect import Origin, OriginStream, certificate_refused, open_origin_stream, tls_name, uses_tls
from connector.origins.errors import BodyTooLarge, InvalidResponse, OriginClosed
from connector.origins.http1_codec import Request, ResponseReader, write_request
from connector.origins.proxy_protocol import Address
from shared.aio import single_errors
from shared.errors import ProtocolError
from shared.events import RequestHead, ResponseHead, end_to_end
from shared.http1_wire import BodyFraming

log = logging.getLogger(__name__)
# What the origin side answers into: a TunnelStream, or the ingress rule's edits around one
# (connector/ingress/edits.py). Compiled code checks an argument's declared class: this one is any.
OriginBound = Any

READ_SIZE = 64 * 1024  # a response head
BODY_READ_SIZE = 256 * 1024  # a response body: one scheduling step per 256 KiB, as the tunnel's reads
MAX_RESPONSE_HEAD = 64 * 1024
MAX_BUFFERED_BODY = 16 * 1024 * 1024  # disableChunkedEncoding buffers a body of unknown length up to this
SAFE_TO_RETRY = frozenset({b"GET", b"HEAD", b"OPTIONS"})


class _StaleConnection(OriginClosed):
    """The origin connection failed before any byte of the response arrived."""


class OriginConnection:
    """One HTTP/1.1 client connection to an origin."""

    def __init__(self, stream: OriginStream) -> None:
        self.stream = stream
        self.reader = ResponseReader()
        self.idle_since = time.monotonic()
        self.request_done = True  # the last request's body was sent whole
        self._framing = BodyFraming(0)

    async def send_request(self, request: Request, ended: bool, upgrade: bool = False) -> None:
        """The request head and, when `ended`, its end (bodiless requests), in one write."""
        try:
            data, self._framing = write_request(request)
            if ended:
                data += self._framing.end()
        except ValueError as exc:
            raise ProtocolError(f"invalid request head from the tunnel: {exc}") from exc
        self.reader.start(request.method, upgrade)
        self.request_done = ended
        if sent := self.stream.send_nowait(data):  # nearly always all of it: no wait, no checkpoint
            data = data[sent:]
        if data:
            await self.stream.send_all(data)

    async def send_body(self, data: bytes) -> None:
        await self.stream.send_all(self._framed(self._framing.body, data))

    async def end_body(self) -> None:
        if data := self._framed(self._framing.end):
            await self.stream.send_all(data)
        self.request_done = True

    def _framed(self, write, *data: bytes) -> bytes:
        try:
            return write(*data)
        except ValueError as exc:
            raise ProtocolError(f"request body from the tunnel: {exc}") from exc

    async def read_head(self) -> None:
        """Read up to the final response head (`reader.status`, `reader.headers`); 1xx are
        skipped. `_StaleConnection` if the origin closed before sending a byte."""
        received = 0
        try:
            while not self.reader.head_done:
                data = await self.stream.receive_some(READ_SIZE)
                if not data:
                    if not received:
                        raise _StaleConnection("closed before responding")
                    raise InvalidResponse("origin sent an invalid response: it closed the connection within the head")
                received += len(data)
                self.reader.feed(data)
                if received > MAX_RESPONSE_HEAD and not self.reader.head_done:
                    raise InvalidResponse(f"origin sent an invalid response: a head over {MAX_RESPONSE_HEAD} bytes")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _StaleConnection(str(exc)) from exc

    async def next_body(self) -> bytes:
        """Response body bytes; b"" at its end."""
        reader = self.reader
        while not (data := reader.take_body()) and not reader.done:
            if data := await self.stream.receive_some(BODY_READ_SIZE):
                reader.feed(data)
            else:
                reader.eof()
                if not reader.done:
                    raise OriginClosed("origin closed the connection in the middle of the response")
        return data

    @property
    def reusable(self) -> bool:
        return self.request_done and self.reader.reusable


class OriginPool:
    """Idle keep-alive connections per origin (and TLS server name and client certificate), at most
    `keepAliveConnections` of them, each for at most `keepAliveTimeout`."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str | None, str], list[OriginConnection]] = defaultdict(list)

    async def connect(
        self, service: Origin, options: OriginRequest, server_name: str | None, visitor: Address | None = None
    ) -> OriginConnection:
        tls_server_name = server_name if uses_tls(service) else None
        return OriginConnection(await open_origin_stream(service, options, tls_server_name, visitor=visitor))

    def take(self, key: tuple[str, str | None, str], options: OriginRequest) -> OriginConnection | None:
        idle = self._idle[key]
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < options.keep_alive_timeout:
                return connection
            _close_quietly(connection)
        return None

    def give_back(self, key: tuple[str, str | None, str], options: OriginRequest, connection: OriginConnection) -> None:
        idle = self._idle[key]
        if connection.reusable and len(idle) < options.keep_alive_connections and not options.proxy_protocol:
            connection.idle_since = time.monotonic()
            idle.append(connection)
        else:
            _close_quietly(connection)

    async def forward(
        self, stream: OriginBound, service: Origin, options: OriginRequest, visitor: Address | None = None
    ) -> None:
        """Send the stream's request to the origin and stream its response back (`visitor`: for proxyProtocol)."""
        head = stream.head
        body = await _buffered_body(stream) if _must_buffer(head, options) else None
        request = _origin_request(head, options, body)
        server_name = tls_name(service, options, head) if uses_tls(service) else None
        key = (str(service), server_name, options.client_digest)
        retry_allowed = head.method in SAFE_TO_RETRY and not head.has_body
        connection = None if options.proxy_protocol else self.take(key, options)
        if connection is not None:
            try:
                await self._exchange(stream, connection, request, body)
            except _StaleConnection:
                _close_quietly(connection)
                if not retry_allowed:
                    raise OriginClosed(f"origin {service} closed a kept-alive connection") from None
            else:
                return await self._finish(stream, key, options, connection)
        connection = await self.connect(service, options, server_name, visitor)
        try:
            await self._exchange(stream, connection, request, body)
        except _StaleConnection as exc:
            _close_quietly(connection)
            closed = OriginClosed(f"origin {service} closed the connection: {exc}")
            raise certificate_refused(str(service), options, exc) or closed from None
        except BaseException:
            _close_quietly(connection)
            raise
        await self._finish(stream, key, options, connection)

    async def _finish(self, stream: OriginBound, key, options: OriginRequest, connection: OriginConnection) -> None:
        """Pool the connection *before* ending the stream, so that the visitor's next request finds it."""
        self.give_back(key, options, connection)
        await stream.end()

    async def _exchange(
        self, stream: OriginBound, connection: OriginConnection, request: Request, body: bytes | None
    ) -> None:
        has_body = stream.head.has_body
        try:  # a bodiless request ends now, not in a task the response could overtake
            await connection.send_request(request, ended=not has_body)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _StaleConnection(str(exc)) from exc
        if not has_body:
            return await _relay_response(stream, connection)
        with single_errors():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_upload, stream, connection, body)
                await _relay_response(stream, connection)
                if not connection.request_done:
                    nursery.cancel_scope.cancel()


async def _relay_response(stream: OriginBound, connection: OriginConnection) -> None:
    """The origin's response, head and body, into the tunnel stream (which `_finish` ends)."""
    await connection.read_head()
    status = connection.reader.status
    has_body = stream.head.method != b"HEAD" and status not in (204, 304)
    await stream.send_response(ResponseHead(status, connection.reader.headers, has_body=has_body))
    while chunk := await connection.next_body():
        await stream.send(chunk)


async def _upload(stream: OriginBound, connection: OriginConnection, body: bytes | None) -> None:
    if body is not None:
        if body:
            await connection.send_body(body)
    else:
        while chunk := await stream.receive():
            await connection.send_body(chunk)
    await connection.end_body()


def _must_buffer(head: RequestHead, options: OriginRequest) -> bool:
    """disableChunkedEncoding and a body of unknown length: send it with a Content-Length instead."""
    return options.disable_chunked_encoding and head.has_body and head.header(b"content-length") is None


async def _buffered_body(stream: OriginBound) -> bytes:
    body = bytearray()
    while chunk := await stream.receive():
        body += chunk
        if len(body) > MAX_BUFFERED_BODY:
            raise BodyTooLarge(
                f"request body over {MAX_BUFFERED_BODY // (1024 * 1024)} MiB without a Content-Length "
                "(disableChunkedEncoding)"
            )
    return bytes(body)


def _origin_request(head: RequestHead, options: OriginRequest, body: bytes | None) -> Request:
    headers = list(end_to_end(head.headers))
    if options.http_host_header:
        headers = [(k, v) for k, v in headers if k not in (b"host", b"x-forwarded-host")]
        headers += [(b"host", options.http_host_header.encode()), (b"x-forwarded-host", head.authority)]
    if body is not None:
        headers.append((b"content-length", str(len(body)).encode()))
    elif head.has_body and not any(k == b"content-length" for k, _ in headers):
        headers.append((b"transfer-encoding", b"chunked"))
    return Request(head.method, head.target, tuple(headers))


def _close_quietly(connection: OriginConnection) -> None:
    """Drop a connection without awaiting (the socket closes at once)."""
    connection.stream.close_forcefully()
