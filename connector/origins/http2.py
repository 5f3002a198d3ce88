"""Forward one tunnel stream to an HTTP/2 origin (`originRequest.http2Origin`), e.g. gRPC.

h2c (prior knowledge) for `http://` and `unix:` services, h2 over TLS with ALPN
`h2` for `https://` and `unix+tls:`. One origin connection per request: its
reader, the request-body upload and the response relay are tasks of the
request's own nursery, so nothing outlives the stream. Bodies are streamed
both ways with trailers (gRPC's `grpc-status`, `grpc-message`) carried through;
response-body credit goes back to the origin only after the chunk was passed on
into the tunnel, so a slow visitor slows the origin instead of filling memory.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings

from connector.ingress.origin_request import OriginRequest
from connector.origins.connect import Origin, certificate_refused, open_origin_stream, tls_name, uses_tls
from connector.origins.errors import InvalidResponse, OriginClosed, OriginTLSError
from connector.origins.proxy_protocol import Address
from shared.aio import single_errors
from shared.events import Headers, RequestHead, ResponseHead, end_to_end
from shared.tunnel_stream import TunnelStream

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
STREAM_WINDOW = 1024 * 1024  # what the origin may send ahead of the tunnel, per stream and connection
DEFAULT_WINDOW = 65_535
MAX_HEADER_LIST = 64 * 1024
CLEANUP_TIMEOUT = 1.0
STREAM_ID = 1  # one request per connection


class _Response:
    """What the reader saw of the one response, handed to the relay in order."""

    def __init__(self) -> None:
        # Unbounded, but flow control bounds it: the origin may send STREAM_WINDOW ahead.
        self.send, self.receive = trio.open_memory_channel(math.inf)


class H2OriginConnection:
    """An h2 client connection to the origin carrying one request."""

    def __init__(self, transport: trio.abc.Stream, url: str) -> None:
        self.transport = transport
        self.url = url
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self._lock = trio.Lock()
        self._window_opened = trio.Event()
        self._events = _Response()
        self._dispatch: dict[type, Callable] = {
            h2.events.ResponseReceived: self._on_response,
            h2.events.DataReceived: self._on_data,
            h2.events.TrailersReceived: self._on_trailers,
            h2.events.StreamEnded: self._on_ended,
            h2.events.StreamReset: self._on_reset,
            h2.events.WindowUpdated: self._on_window,
            h2.events.RemoteSettingsChanged: self._on_window,
            h2.events.ConnectionTerminated: self._on_goaway,
        }

    async def start(self) -> None:
        self.h2.local_settings = Settings(
            client=True,
            initial_values={
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            },
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(STREAM_WINDOW - DEFAULT_WINDOW)
        await self.flush()

    # The send path ----------------------------------------------------------------

    async def flush(self) -> None:
        async with self._lock:
            while data := self.h2.data_to_send():
                await self.transport.send_all(data)

    async def send(self, action: Callable[[], None]) -> None:
        try:
            action()
        except h2.exceptions.StreamClosedError:
            raise
        except h2.exceptions.ProtocolError as exc:
            raise InvalidResponse(f"origin {self.url}: HTTP/2 error: {exc}") from exc
        await self.flush()

    async def send_data(self, data: bytes) -> None:
        """Send `data` on the stream, waiting for the origin's flow-control credit."""
        offset = 0
        while offset < len(data):
            window = min(self.h2.local_flow_control_window(STREAM_ID), self.h2.max_outbound_frame_size)  # raises once closed
            if window <= 0:
                await self._window_opened.wait()
                continue
            chunk = data[offset : offset + window]
            await self.send(functools.partial(self.h2.send_data, STREAM_ID, chunk))
            offset += len(chunk)

    # The reader -------------------------------------------------------------------

    async def read_loop(self) -> None:
        while True:
            data = await self.transport.receive_some(READ_SIZE)
            if not data:
                self._events.send.send_nowait(OriginClosed(f"origin {self.url} closed the HTTP/2 connection"))
                return
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self._events.send.send_nowait(InvalidResponse(f"origin {self.url} broke HTTP/2: {exc}"))
                await self.flush()  # h2 queued a GOAWAY
                return
            for event in events:
                if handler := self._dispatch.get(type(event)):
                    handler(event)
            await self.flush()

    def _on_response(self, event: h2.events.ResponseReceived) -> None:
        self._events.send.send_nowait(event)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        self._events.send.send_nowait(event)

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        self._events.send.send_nowait(event)

    def _on_ended(self, event: h2.events.StreamEnded) -> None:
        self._events.send.send_nowait(event)

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        code = event.error_code.name if isinstance(event.error_code, ErrorCodes) else event.error_code
        self._events.send.send_nowait(InvalidResponse(f"origin {self.url} reset the stream ({code})"))

    def _on_window(self, event: h2.events.Event) -> None:
        self._window_opened.set()
        self._window_opened = trio.Event()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        if event.last_stream_id is None or event.last_stream_id < STREAM_ID or event.error_code != ErrorCodes.NO_ERROR:
            self._events.send.send_nowait(InvalidResponse(f"origin {self.url} sent GOAWAY ({event.error_code!r})"))

    async def next_event(self) -> h2.events.Event:
        item = await self._events.receive.receive()
        if isinstance(item, BaseException):
            raise item
        return item


async def forward_h2(
    stream: TunnelStream, service: Origin, options: OriginRequest, visitor: Address | None = None
) -> None:
    """Send the stream's request to an HTTP/2 origin and relay the response, trailers included
    (`visitor`: for proxyProtocol)."""
    head = stream.head
    tls = uses_tls(service)
    server_name = tls_name(service, options, head) if tls else None
    connection = await connect_h2(service, options, server_name, visitor)
    try:
        with single_errors():
            async with trio.open_nursery() as nursery:
                await connection.start()
                nursery.start_soon(connection.read_loop)
                await connection.send(
                    functools.partial(
                        connection.h2.send_headers,
                        STREAM_ID,
                        request_fields(head, options, b"https" if tls else b"http"),
                        end_stream=not head.has_body,
                    )
                )
                if head.has_body:
                    nursery.start_soon(_upload, stream, connection)
                await _relay_response(stream, connection)
                nursery.cancel_scope.cancel()
    except trio.BrokenResourceError as exc:
        if refused := certificate_refused(connection.url, options, exc):
            raise refused from exc
        raise
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
            try:
                connection.h2.close_connection()
                await connection.flush()
            except (h2.exceptions.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        await trio.aclose_forcefully(connection.transport)


async def _upload(stream: TunnelStream, connection: H2OriginConnection) -> None:
    """Tunnel → origin: the request body, then its trailers or END_STREAM.

    An origin may answer and close the stream before the body ends (a gRPC server
    needs only the message, not END_STREAM): the rest of the body is then unwanted.
    """
    try:
        while chunk := await stream.receive():
            await connection.send_data(chunk)
        trailers = _trailer_fields(stream.trailers)
        if trailers:
            await connection.send(functools.partial(connection.h2.send_headers, STREAM_ID, trailers, end_stream=True))
        else:
            await connection.send(functools.partial(connection.h2.end_stream, STREAM_ID))
    except h2.exceptions.StreamClosedError:
        log.debug("origin.stream_closed_before_request_end url=%s", connection.url)


async def _relay_response(stream: TunnelStream, connection: H2OriginConnection) -> None:
    """Origin → tunnel: head, body (credit returned once passed on), then trailers or the end."""
    while True:
        event = await connection.next_event()
        if isinstance(event, h2.events.ResponseReceived):
            break
    status, headers = _split_status(event.headers)
    has_body = event.stream_ended is None
    await stream.send_response(ResponseHead(status, headers, has_body=has_body))
    if not has_body:
        return
    trailers: Headers = ()
    while True:
        event = await connection.next_event()
        if isinstance(event, h2.events.DataReceived):
            if event.data:
                await stream.send(bytes(event.data))
            if event.flow_controlled_length:
                await connection.send(
                    functools.partial(
                        connection.h2.acknowledge_received_data, event.flow_controlled_length, STREAM_ID
                    )
                )
        elif isinstance(event, h2.events.TrailersReceived):
            trailers = _trailer_fields(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            break
    if trailers:
        await stream.send_trailers(trailers)
    else:
        await stream.end()


async def connect_h2(
    service: Origin, options: OriginRequest, server_name: str | None, visitor: Address | None
) -> H2OriginConnection:
    """Open the origin connection: TCP/unix within connectTimeout, TLS (ALPN h2) within tlsTimeout."""
    url = str(service)
    transport = await open_origin_stream(service, options, server_name, alpn=("h2",), visitor=visitor)
    if server_name is not None and transport.selected_alpn_protocol() != "h2":
        await trio.aclose_forcefully(transport)
        raise OriginTLSError(f"origin {url} did not agree to HTTP/2 (ALPN h2); set http2Origin: false")
    return H2OriginConnection(transport, url)


def request_fields(head: RequestHead, options: OriginRequest, scheme: bytes) -> list[tuple[bytes, bytes]]:
    """The request's HTTP/2 header block: pseudo-headers, then end-to-end fields (TE only as trailers)."""
    authority = head.authority
    regular = [(name, value) for name, value in end_to_end(head.headers) if name != b"host"]
    if options.http_host_header:
        regular = [(name, value) for name, value in regular if name != b"x-forwarded-host"]
        regular.append((b"x-forwarded-host", head.authority))
        authority = options.http_host_header.encode()
    if any(name == b"te" and b"trailers" in value.lower() for name, value in head.headers):
        regular.append((b"te", b"trailers"))  # gRPC servers require it
    pseudo = [(b":method", head.method), (b":scheme", scheme), (b":authority", authority), (b":path", head.target)]
    return pseudo + [(name.lower(), value) for name, value in regular]


def _split_status(fields) -> tuple[int, Headers]:
    status = 502
    headers = []
    for name, value in fields:
        name, value = bytes(name), bytes(value)
        if name == b":status":
            status = int(value)
        elif not name.startswith(b":"):
            headers.append((name, value))
    return status, tuple(headers)


def _trailer_fields(fields) -> Headers:
    """Trailing fields without pseudo-headers or hop-by-hop fields."""
    return tuple(
        (name, value)
        for name, value in end_to_end(tuple((bytes(n).lower(), bytes(v)) for n, v in fields))
        if not name.startswith(b":")
    )

