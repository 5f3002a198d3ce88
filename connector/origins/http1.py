"""Forward one tunnel stream to an HTTP origin (h11), bodies streamed both ways.

Connections to each origin are kept alive and reused (not with proxyProtocol: each
such connection carries one visitor's address); a request that failed on a
reused connection before any response byte is retried once on a fresh one, but
only when it is safe (a GET/HEAD/OPTIONS without a body).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import h11
import trio

from connector.ingress.origin_request import OriginRequest
from connector.origins.connect import Origin, certificate_refused, open_origin_stream, tls_name, uses_tls
from connector.origins.errors import BodyTooLarge, InvalidResponse, OriginClosed
from connector.origins.proxy_protocol import Address
from shared.aio import single_errors
from shared.events import RequestHead, ResponseHead, end_to_end
from shared.tunnel_stream import TunnelStream

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
MAX_RESPONSE_HEAD = 64 * 1024
MAX_BUFFERED_BODY = 16 * 1024 * 1024  # disableChunkedEncoding buffers a body of unknown length up to this
SAFE_TO_RETRY = frozenset({b"GET", b"HEAD", b"OPTIONS"})
END = h11.EndOfMessage()


class OriginConnection:
    """One HTTP/1.1 client connection to an origin."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        self.idle_since = time.monotonic()

    async def send(self, event: h11.Event) -> None:
        await self.stream.send_all(self.h11.send(event))

    async def send_request(self, request: h11.Request, ended: bool) -> None:
        """The request head and, when `ended`, its end (bodiless requests), in one write."""
        data = self.h11.send(request)
        if ended:
            data += self.h11.send(END)
        await self.stream.send_all(data)

    async def next_event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(await self.stream.receive_some(READ_SIZE))

    @property
    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE


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
            connection.h11.start_next_cycle()
            connection.idle_since = time.monotonic()
            idle.append(connection)
        else:
            _close_quietly(connection)

    async def forward(
        self, stream: TunnelStream, service: Origin, options: OriginRequest, visitor: Address | None = None
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

    async def _finish(self, stream: TunnelStream, key, options: OriginRequest, connection: OriginConnection) -> None:
        """Pool the connection *before* ending the stream, so that the visitor's next request finds it."""
        self.give_back(key, options, connection)
        await stream.end()

    async def _exchange(
        self, stream: TunnelStream, connection: OriginConnection, request: h11.Request, body: bytes | None
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
                if connection.h11.our_state is not h11.DONE:
                    nursery.cancel_scope.cancel()


async def _relay_response(stream: TunnelStream, connection: OriginConnection) -> None:
    """The origin's response, head and body, into the tunnel stream (which `_finish` ends)."""
    response = await _read_response_head(connection)
    has_body = stream.head.method != b"HEAD" and response.status_code not in (204, 304)
    await stream.send_response(ResponseHead(response.status_code, tuple(response.headers), has_body=has_body))
    while has_body:
        event = await connection.next_event()
        if type(event) is h11.Data:
            await stream.send(bytes(event.data))
        elif type(event) is h11.EndOfMessage:
            return
        else:
            raise OriginClosed("origin closed the connection in the middle of the response")
    await connection.next_event()  # EndOfMessage


class _StaleConnection(Exception):
    """The origin connection failed before any byte of the response arrived."""


async def _upload(stream: TunnelStream, connection: OriginConnection, body: bytes | None) -> None:
    if body is not None:
        if body:
            await connection.send(h11.Data(data=body))
    else:
        while chunk := await stream.receive():
            await connection.send(h11.Data(data=chunk))
    await connection.send(END)


def _must_buffer(head: RequestHead, options: OriginRequest) -> bool:
    """disableChunkedEncoding and a body of unknown length: send it with a Content-Length instead."""
    return options.disable_chunked_encoding and head.has_body and head.header(b"content-length") is None


async def _buffered_body(stream: TunnelStream) -> bytes:
    body = bytearray()
    while chunk := await stream.receive():
        body += chunk
        if len(body) > MAX_BUFFERED_BODY:
            raise BodyTooLarge(
                f"request body over {MAX_BUFFERED_BODY // (1024 * 1024)} MiB without a Content-Length "
                "(disableChunkedEncoding)"
            )
    return bytes(body)


async def _read_response_head(connection: OriginConnection) -> h11.Response:
    """The response head, skipping 1xx; `_StaleConnection` if the origin closed before sending a byte
    (h11 would call that end of file a protocol error)."""
    answered = False
    try:
        while True:
            event = connection.h11.next_event()
            if event is h11.NEED_DATA:
                data = await connection.stream.receive_some(READ_SIZE)
                if not data and not answered:
                    raise _StaleConnection("closed before responding")
                answered = True
                connection.h11.receive_data(data)
            elif type(event) is h11.Response:
                return event
            elif type(event) is h11.ConnectionClosed:
                raise _StaleConnection("closed before responding")
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise _StaleConnection(str(exc)) from exc
    except h11.RemoteProtocolError as exc:
        raise InvalidResponse(f"origin sent an invalid response: {exc}") from exc


def _origin_request(head: RequestHead, options: OriginRequest, body: bytes | None) -> h11.Request:
    headers = list(end_to_end(head.headers))
    if options.http_host_header:
        headers = [(k, v) for k, v in headers if k not in (b"host", b"x-forwarded-host")]
        headers += [(b"host", options.http_host_header.encode()), (b"x-forwarded-host", head.authority)]
    if body is not None:
        headers.append((b"content-length", str(len(body)).encode()))
    elif head.has_body and not any(k == b"content-length" for k, _ in headers):
        headers.append((b"transfer-encoding", b"chunked"))
    return h11.Request(method=head.method, target=head.target, headers=headers)


def _close_quietly(connection: OriginConnection) -> None:
    """Drop a connection without awaiting (the socket closes at once)."""
    stream = connection.stream
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        stream.socket.close()
