"""Open a connection to an origin: TCP or a unix socket within connectTimeout, then TLS
(verified as `originRequest` says) within tlsTimeout."""

from __future__ import annotations

import functools
import socket
import ssl

import trio

from connector.ingress.origin_request import OriginRequest
from connector.ingress.rules import HttpService, UnixService, normalize_host
from connector.origins.errors import OriginTimeout, OriginTLSError, connecting
from shared.events import RequestHead

HAPPY_EYEBALLS_DELAY = 0.25
UNIX_TLS_SERVER_NAME = "localhost"  # unix+tls: without originServerName

Origin = HttpService | UnixService


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


def uses_tls(service: Origin) -> bool:
    return service.tls if isinstance(service, UnixService) else service.scheme == "https"


def tls_name(service: Origin, options: OriginRequest, head: RequestHead) -> str:
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
