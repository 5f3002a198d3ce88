"""Forward one tunnel stream to an HTTP origin (h11), bodies streamed both ways.

Connections to each origin are kept alive and reused; a request that failed on a
reused connection before any response byte is retried once on a fresh one, but
only when it is safe (a GET/HEAD/OPTIONS without a body).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass

import h11
import trio

from connector.ingress import HttpService, UnixService
from shared.aio import single_errors
from shared.config import parse_duration
from shared.errors import OriginError
from shared.events import ResponseHead, end_to_end
from shared.transport import TunnelStream

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
MAX_RESPONSE_HEAD = 64 * 1024
SAFE_TO_RETRY = frozenset({b"GET", b"HEAD", b"OPTIONS"})


@dataclass(frozen=True)
class OriginOptions:
    """The `originRequest` keys this module understands, with cloudflared's defaults."""

    connect_timeout: float = 30.0
    tls_timeout: float = 10.0
    no_tls_verify: bool = False
    origin_server_name: str = ""
    http_host_header: str = ""
    keep_alive_connections: int = 100
    keep_alive_timeout: float = 90.0

    @classmethod
    def from_config(cls, raw: dict) -> OriginOptions:
        defaults = cls()
        return cls(
            connect_timeout=parse_duration(raw.get("connectTimeout", defaults.connect_timeout)),
            tls_timeout=parse_duration(raw.get("tlsTimeout", defaults.tls_timeout)),
            no_tls_verify=bool(raw.get("noTLSVerify", False)),
            origin_server_name=str(raw.get("originServerName", "")),
            http_host_header=str(raw.get("httpHostHeader", "")),
            keep_alive_connections=int(raw.get("keepAliveConnections", defaults.keep_alive_connections)),
            keep_alive_timeout=parse_duration(raw.get("keepAliveTimeout", defaults.keep_alive_timeout)),
        )


def service_url(service: HttpService | UnixService) -> str:
    if isinstance(service, UnixService):
        return f"unix{'+tls' if service.tls else ''}:{service.path}"
    return f"{service.scheme}://{service.host}:{service.port}"


class OriginConnection:
    """One HTTP/1.1 client connection to an origin."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        self.idle_since = time.monotonic()

    async def send(self, event: h11.Event) -> None:
        await self.stream.send_all(self.h11.send(event))

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
    """Idle keep-alive connections per origin."""

    def __init__(self) -> None:
        self._idle: dict[str, list[OriginConnection]] = defaultdict(list)

    async def connect(self, service: HttpService | UnixService, options: OriginOptions) -> OriginConnection:
        url = service_url(service)
        try:
            with trio.fail_after(options.connect_timeout):
                if isinstance(service, UnixService):
                    stream: trio.abc.Stream = await trio.open_unix_socket(service.path)
                else:
                    stream = await trio.open_tcp_stream(service.host, service.port)
            if _uses_tls(service):
                stream = trio.SSLStream(
                    stream, _origin_tls_context(options), server_hostname=_server_name(service, options)
                )
                with trio.fail_after(options.tls_timeout):
                    await stream.do_handshake()
        except trio.TooSlowError:
            raise OriginError(f"origin {url} did not accept a connection in time") from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise OriginError(f"origin {url} is unreachable: {reason}") from exc
        return OriginConnection(stream)

    def take(self, service: HttpService | UnixService, options: OriginOptions) -> OriginConnection | None:
        idle = self._idle[service_url(service)]
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < options.keep_alive_timeout:
                return connection
            _close_quietly(connection)
        return None

    def give_back(self, service, options: OriginOptions, connection: OriginConnection) -> None:
        idle = self._idle[service_url(service)]
        if connection.reusable and len(idle) < options.keep_alive_connections:
            connection.h11.start_next_cycle()
            connection.idle_since = time.monotonic()
            idle.append(connection)
        else:
            _close_quietly(connection)

    async def forward(self, stream: TunnelStream, service: HttpService | UnixService, options: OriginOptions) -> None:
        """Send the stream's request to the origin and stream its response back."""
        head = stream.head
        retry_allowed = head.method in SAFE_TO_RETRY and not head.has_body
        connection = self.take(service, options)
        if connection is not None:
            try:
                await self._exchange(stream, connection, options)
                self.give_back(service, options, connection)
                return
            except _StaleConnection:
                _close_quietly(connection)
                if not retry_allowed:
                    raise OriginError(f"origin {service_url(service)} closed a kept-alive connection") from None
        connection = await self.connect(service, options)
        try:
            await self._exchange(stream, connection, options)
        except _StaleConnection as exc:
            _close_quietly(connection)
            raise OriginError(f"origin {service_url(service)} closed the connection: {exc}") from None
        except BaseException:
            _close_quietly(connection)
            raise
        self.give_back(service, options, connection)

    async def _exchange(self, stream: TunnelStream, connection: OriginConnection, options: OriginOptions) -> None:
        try:
            await connection.send(_origin_request(stream, options))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _StaleConnection(str(exc)) from exc
        with single_errors():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_upload, stream, connection)
                response = await _read_response_head(connection)
                has_body = stream.head.method != b"HEAD" and response.status_code not in (204, 304)
                await stream.send_response(
                    ResponseHead(response.status_code, _headers(response.headers), has_body=has_body)
                )
                while has_body:
                    event = await connection.next_event()
                    if isinstance(event, h11.Data):
                        await stream.send(bytes(event.data))
                    elif isinstance(event, h11.EndOfMessage):
                        await stream.end()
                        break
                    else:
                        raise OriginError("origin closed the connection in the middle of the response")
                if not has_body:
                    await connection.next_event()  # EndOfMessage
                if connection.h11.our_state is not h11.DONE:
                    nursery.cancel_scope.cancel()


class _StaleConnection(Exception):
    """The origin connection failed before any byte of the response arrived."""


async def _upload(stream: TunnelStream, connection: OriginConnection) -> None:
    while chunk := await stream.receive():
        await connection.send(h11.Data(data=chunk))
    await connection.send(h11.EndOfMessage())


async def _read_response_head(connection: OriginConnection) -> h11.Response:
    try:
        while True:
            event = await connection.next_event()
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.ConnectionClosed):
                raise _StaleConnection("closed before responding")
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise _StaleConnection(str(exc)) from exc
    except h11.RemoteProtocolError as exc:
        raise OriginError(f"origin sent an invalid response: {exc}") from exc


def _origin_request(stream: TunnelStream, options: OriginOptions) -> h11.Request:
    head = stream.head
    headers = list(end_to_end(head.headers))
    if options.http_host_header:
        headers = [(k, v) for k, v in headers if k != b"host"]
        headers += [(b"host", options.http_host_header.encode()), (b"x-forwarded-host", head.authority)]
    if head.has_body and not any(k == b"content-length" for k, _ in headers):
        headers.append((b"transfer-encoding", b"chunked"))
    return h11.Request(method=head.method, target=head.target, headers=headers)


def _headers(raw: list) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((bytes(name), bytes(value)) for name, value in raw)


def _uses_tls(service: HttpService | UnixService) -> bool:
    return service.tls if isinstance(service, UnixService) else service.scheme == "https"


def _server_name(service: HttpService | UnixService, options: OriginOptions) -> str | None:
    if options.origin_server_name:
        return options.origin_server_name
    return None if isinstance(service, UnixService) else service.host


def _origin_tls_context(options: OriginOptions) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if options.no_tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _close_quietly(connection: OriginConnection) -> None:
    """Drop a connection without awaiting (the socket closes at once)."""
    stream = connection.stream
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        stream.socket.close()
