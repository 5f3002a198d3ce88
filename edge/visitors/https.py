"""The public HTTPS listener: TLS with SNI certificates, then HTTP/2 or HTTP/1.1 as ALPN chose."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

import trio

from edge.certs.tls_policy import apply_tls_policy
from edge.routing.proxy import Exchange, Proxy
from edge.visitors.connections import (
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    ConnectionsPerIp,
    socket_address,
)
from edge.visitors.http1 import Http1Connection, Http1Limits
from edge.visitors.http2 import Http2Connection, Http2Limits
from shared.events import ResponseHead

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
ALPN = ["h2", "http/1.1"]


@dataclass(frozen=True)
class FrontendOptions:
    """Edge-wide visitor settings: `burrow-edge serve --max-connections-per-ip/--hsts-max-age`."""

    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP
    hsts_max_age: int | None = None  # seconds; None: no Strict-Transport-Security header


def harden(context: ssl.SSLContext) -> ssl.SSLContext:
    """The edge's TLS policy (`apply_tls_policy`); also records the SNI server name on each
    connection's SSLObject (`.requested_server_name`)."""
    apply_tls_policy(context)
    choose = context.sni_callback

    def record(sock: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        sock.requested_server_name = server_name.lower().rstrip(".") if server_name else None
        if choose is not None:
            choose(sock, server_name, ctx)

    context.sni_callback = record
    return context


class HttpsFrontend:
    """Serves visitor connections accepted on the HTTPS listeners."""

    def __init__(
        self,
        proxy: Proxy,
        limits: Http1Limits = Http1Limits(),
        http2_limits: Http2Limits = Http2Limits(),
        options: FrontendOptions = FrontendOptions(),
    ) -> None:
        self.proxy = proxy
        self.limits = limits
        self.http2_limits = http2_limits
        self.options = options
        self.connections_per_ip = ConnectionsPerIp(options.max_connections_per_ip)
        hsts = options.hsts_max_age
        self._handle = proxy.handle if hsts is None else _with_header(proxy.handle, _hsts_value(hsts))
        self.connections: set[Http1Connection | Http2Connection] = set()

    def drain(self) -> None:
        """Tell every visitor connection the edge is shutting down (`Connection: close` / GOAWAY)."""
        for connection in list(self.connections):
            connection.drain()

    async def handle(self, stream: TLSSocketStream) -> None:
        client = socket_address(stream, "getpeername")
        ip = client[0]
        if not self.connections_per_ip.admit(ip):
            log.info("https.refused client=%s reason=too-many-connections", ip)
            await trio.aclose_forcefully(stream)
            return
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await stream.do_handshake()
            server = socket_address(stream, "getsockname")
            sni = getattr(stream.ssl_object, "requested_server_name", None)  # set by `harden`
            if stream.selected_alpn_protocol() == "h2":
                connection = Http2Connection(stream, client, server, self.http2_limits, sni=sni)
            else:
                connection = Http1Connection(stream, client, server, self.limits, sni=sni)
            self.connections.add(connection)
            try:
                await connection.serve(self._handle)
            finally:
                self.connections.discard(connection)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, ssl.SSLError) as exc:
            log.debug("https.connection_ended client=%s error=%r", ip, exc)
        except Exception:  # one visitor's failure must never stop the listener
            log.exception("https.connection_crashed client=%s", ip)
        finally:
            self.connections_per_ip.release(ip)
            await trio.aclose_forcefully(stream)


def _hsts_value(max_age: int) -> bytes:
    return b"max-age=%d" % max_age


def _with_header(handle, value: bytes):
    async def handle_with_hsts(exchange: Exchange) -> None:
        await handle(_HstsExchange(exchange, value))

    return handle_with_hsts


class _HstsExchange:
    """An exchange whose responses carry Strict-Transport-Security."""

    def __init__(self, inner: Exchange, value: bytes) -> None:
        self._inner = inner
        self._value = value

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    async def send_response(self, head: ResponseHead) -> None:
        headers = tuple((k, v) for k, v in head.headers if k != b"strict-transport-security")
        headers += ((b"strict-transport-security", self._value),)
        await self._inner.send_response(ResponseHead(head.status, headers, head.has_body))
