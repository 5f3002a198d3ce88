"""Forward one tunnel stream to an HTTP origin (HTTP/1.1 on the wire: `http1_codec`),
bodies streamed both ways.

Connections to each origin are kept alive and reused; a request that failed on a
reused connection before any response byte is retried once on a fresh one, but
only when it is safe (a GET/HEAD/OPTIONS without a body).
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
import time
from collections import defaultdict

import trio

from connector.ingress.origin_request import OriginRequest
from connector.ingress.rules import HttpService, UnixService, normalize_host
from connector.origins.errors import BodyTooLarge, InvalidResponse, OriginClosed, OriginTimeout, OriginTLSError, connecting
from connector.origins.http1_codec import Request, ResponseReader, write_request
from shared.aio import single_errors
from shared.errors import ProtocolError
from shared.events import RequestHead, ResponseHead, end_to_end
from shared.http1_wire import BodyFraming
from shared.tunnel_stream import TunnelStream

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
MAX_RESPONSE_HEAD = 64 * 1024
MAX_BUFFERED_BODY = 16 * 1024 * 1024  # disableChunkedEncoding buffers a body of unknown length up to this
HAPPY_EYEBALLS_DELAY = 0.25
UNIX_TLS_SERVER_NAME = "localhost"  # unix+tls: without originServerName
SAFE_TO_RETRY = frozenset({b"GET", b"HEAD", b"OPTIONS"})


class _StaleConnection(OriginClosed):
    """The origin connection failed before any byte of the response arrived."""


class OriginConnection:
    """One HTTP/1.1 client connection to an origin."""

    def __init__(self, stream: trio.abc.Stream) -> None:
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
            if data := await self.stream.receive_some(READ_SIZE):
                reader.feed(data)
            else:
                reader.eof()
                if not reader.done:
                    raise OriginClosed("origin closed the connection in the middle of the response")
        return data

    @property
    def reusable(self) -> bool:
        return self.request_done and self.reader.reusable


Origin = HttpService | UnixService


class OriginPool:
    """Idle keep-alive connections per origin (and TLS server name), at most
    `keepAliveConnections` of them, each for at most `keepAliveTimeout`."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str | None], list[OriginConnection]] = defaultdict(list)

    async def connect(self, service: Origin, options: OriginRequest, server_name: str | None) -> OriginConnection:
        return OriginConnection(await open_origin_stream(service, options, server_name if _uses_tls(service) else None))

    def take(self, key: tuple[str, str | None], options: OriginRequest) -> OriginConnection | None:
        idle = self._idle[key]
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < options.keep_alive_timeout:
                return connection
            _close_quietly(connection)
        return None

    def give_back(self, key: tuple[str, str | None], options: OriginRequest, connection: OriginConnection) -> None:
        idle = self._idle[key]
        if connection.reusable and len(idle) < options.keep_alive_connections:
            connection.idle_since = time.monotonic()
            idle.append(connection)
        else:
            _close_quietly(connection)

    async def forward(self, stream: TunnelStream, service: Origin, options: OriginRequest) -> None:
        """Send the stream's request to the origin and stream its response back."""
        head = stream.head
        body = await _buffered_body(stream) if _must_buffer(head, options) else None
        request = _origin_request(head, options, body)
        server_name = _server_name(service, options, head) if _uses_tls(service) else None
        key = (str(service), server_name)
        retry_allowed = head.method in SAFE_TO_RETRY and not head.has_body
        connection = self.take(key, options)
        if connection is not None:
            try:
                await self._exchange(stream, connection, request, body)
            except _StaleConnection:
                _close_quietly(connection)
                if not retry_allowed:
                    raise OriginClosed(f"origin {service} closed a kept-alive connection") from None
            else:
                return await self._finish(stream, key, options, connection)
        connection = await self.connect(service, options, server_name)
        try:
            await self._exchange(stream, connection, request, body)
        except _StaleConnection as exc:
            _close_quietly(connection)
            raise OriginClosed(f"origin {service} closed the connection: {exc}") from None
        except BaseException:
            _close_quietly(connection)
            raise
        await self._finish(stream, key, options, connection)

    async def _finish(self, stream: TunnelStream, key, options: OriginRequest, connection: OriginConnection) -> None:
        """Pool the connection *before* ending the stream, so that the visitor's next request finds it."""
        self.give_back(key, options, connection)
        await stream.end()

    async def _exchange(
        self, stream: TunnelStream, connection: OriginConnection, request: Request, body: bytes | None
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


async def _relay_response(stream: TunnelStream, connection: OriginConnection) -> None:
    """The origin's response, head and body, into the tunnel stream (which `_finish` ends)."""
    await connection.read_head()
    status = connection.reader.status
    has_body = stream.head.method != b"HEAD" and status not in (204, 304)
    await stream.send_response(ResponseHead(status, connection.reader.headers, has_body=has_body))
    while chunk := await connection.next_body():
        await stream.send(chunk)


async def _upload(stream: TunnelStream, connection: OriginConnection, body: bytes | None) -> None:
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


async def _open_stream(service: Origin, options: OriginRequest) -> trio.abc.Stream:
    if isinstance(service, UnixService):
        return await trio.open_unix_socket(service.path)
    delay = None if options.no_happy_eyeballs else HAPPY_EYEBALLS_DELAY
    stream = await trio.open_tcp_stream(service.host, service.port, happy_eyeballs_delay=delay)
    if options.tcp_keep_alive > 0:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            seconds = max(1, round(options.tcp_keep_alive))
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, seconds)
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, seconds)
    return stream


def _uses_tls(service: Origin) -> bool:
    return service.tls if isinstance(service, UnixService) else service.scheme == "https"


def _server_name(service: Origin, options: OriginRequest, head: RequestHead) -> str:
    """SNI and the name the certificate must carry: matchSNItoHost, originServerName, the origin's host."""
    if options.match_sni_to_host:
        return normalize_host(options.http_host_header or head.authority.decode("latin-1"))
    if options.origin_server_name:
        return options.origin_server_name
    return UNIX_TLS_SERVER_NAME if isinstance(service, UnixService) else service.host


@functools.cache
def _tls_context(no_verify: bool, ca_pem: str, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """The system CAs plus `caPool`; no verification at all with noTLSVerify."""
    context = ssl.create_default_context()
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    if no_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


async def open_origin_stream(
    service: Origin, options: OriginRequest, tls_server_name: str | None, alpn: tuple[str, ...] = ()
) -> trio.abc.Stream:
    """Connect within connectTimeout; with a `tls_server_name`, finish TLS within tlsTimeout."""
    url = str(service)
    with connecting(url, options.connect_timeout):
        stream = await _open_stream(service, options)
    if tls_server_name is None:
        return stream
    context = _tls_context(options.no_tls_verify, options.ca_pem, alpn)
    tls_stream = trio.SSLStream(stream, context, server_hostname=tls_server_name)
    try:
        with trio.fail_after(options.tls_timeout):
            await tls_stream.do_handshake()
    except trio.TooSlowError:
        await trio.aclose_forcefully(tls_stream)
        raise OriginTimeout(
            f"origin {url} did not finish the TLS handshake within {options.tls_timeout:g}s (tlsTimeout)"
        ) from None
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tls_stream)
        raise _tls_error(url, tls_server_name, exc.__cause__ or exc) from exc
    return tls_stream


def _tls_error(url: str, server_name: str | None, exc: BaseException) -> OriginTLSError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return OriginTLSError(
            f"origin {url} failed TLS verification for {server_name!r}: {exc.verify_message}; "
            "set originServerName and caPool, or noTLSVerify"
        )
    return OriginTLSError(f"origin {url}: TLS handshake failed: {getattr(exc, 'reason', None) or exc}")


def _close_quietly(connection: OriginConnection) -> None:
    """Drop a connection without awaiting (the socket closes at once)."""
    stream = connection.stream
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        stream.socket.close()
