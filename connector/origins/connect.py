"""Open a connection to an origin: TCP or a unix socket within connectTimeout, the
PROXY protocol header first with `proxyProtocol`, then TLS (verified, and with a
client certificate, as `originRequest` says) within tlsTimeout."""

from __future__ import annotations

import functools
import socket
import ssl

import trio

from connector.ingress.origin_request import OriginRequest
from connector.ingress.rules import normalize_host
from connector.ingress.services import HttpService, TcpService, UnixService
from connector.origins import proxy_protocol
from connector.origins.errors import OriginTimeout, OriginTLSError, connecting
from shared.events import RequestHead
from shared.socket_stream import PlainSocketStream
from shared.tls_socket import TLSSocketStream

HAPPY_EYEBALLS_DELAY = 0.25
UNIX_TLS_SERVER_NAME = "localhost"  # unix+tls: without originServerName

# The origin's TLS alerts (OpenSSL's reasons) that refuse our client certificate or its absence;
# a bare handshake_failure is what nginx (`VerifyMode Require`) sends when none came.
HANDSHAKE_FAILURE = "SSLV3_ALERT_HANDSHAKE_FAILURE"
CERTIFICATE_ALERTS = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA", "TLSV1_ALERT_ACCESS_DENIED", HANDSHAKE_FAILURE,
    }
)

Origin = HttpService | UnixService
OriginStream = PlainSocketStream | TLSSocketStream


async def _open_stream(service: Origin | TcpService, options: OriginRequest) -> trio.abc.Stream:
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
def _tls_context(
    no_verify: bool, ca_pem: str, alpn: tuple[str, ...] = (), client: tuple[str, str, str] | None = None
) -> ssl.SSLContext:
    """The system CAs plus `caPool`; no verification at all with noTLSVerify; the `client`
    certificate and key (paths, and the digest of their contents, which keys the cache)."""
    context = ssl.create_default_context()
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    if no_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if client is not None:
        context.load_cert_chain(client[0], client[1], password="")  # never a prompt; checked at load
    return context


def _context(options: OriginRequest, alpn: tuple[str, ...], url: str) -> ssl.SSLContext:
    client = (options.client_certificate, options.client_key, options.client_digest) if options.client_digest else None
    try:
        return _tls_context(options.no_tls_verify, options.ca_pem, alpn, client)
    except (OSError, ssl.SSLError) as exc:  # the files changed since the config was loaded
        raise OriginTLSError(
            f"origin {url}: cannot load clientCertificate {options.client_certificate} "
            f"with clientKey {options.client_key}: {getattr(exc, 'reason', None) or exc.strerror or exc}"
        ) from None


async def open_origin_stream(
    service: Origin | TcpService,
    options: OriginRequest,
    tls_server_name: str | None,
    alpn: tuple[str, ...] = (),
    visitor: proxy_protocol.Address | None = None,
) -> OriginStream:
    """Connect within connectTimeout, sending the PROXY protocol header for `visitor` with
    proxyProtocol; with a `tls_server_name`, finish TLS within tlsTimeout."""
    url = str(service)
    with connecting(url, options.connect_timeout):
        stream = await _open_stream(service, options)
        if options.proxy_protocol:
            await stream.send_all(proxy_protocol.header(options.proxy_protocol, visitor, _peer(stream)))
    if tls_server_name is None:
        return PlainSocketStream.take(stream)
    context = _context(options, alpn, url)
    tls_stream = TLSSocketStream.wrap(stream.socket, context, server_hostname=tls_server_name)
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
        raise _tls_error(url, tls_server_name, options, exc.__cause__ or exc) from exc
    return tls_stream


def _peer(stream: trio.abc.Stream) -> proxy_protocol.Address | None:
    """The origin's IP and port as connected to (None for a unix socket)."""
    if isinstance(stream, trio.SocketStream) and stream.socket.family in (socket.AF_INET, socket.AF_INET6):
        return stream.socket.getpeername()[:2]
    return None


def certificate_refused(url: str, options: OriginRequest, exc: BaseException | None) -> OriginTLSError | None:
    """The origin's TLS alert about our client certificate (or its absence) found in `exc`'s
    causes, in words; None for any other failure. (With TLS 1.3 the alert may come after
    the handshake, with the first read.)"""
    while exc is not None and not isinstance(exc, ssl.SSLError):
        exc = exc.__cause__ or exc.__context__
    reason = getattr(exc, "reason", None)
    if reason not in CERTIFICATE_ALERTS:
        return None
    alert = "TLS alert: " + reason.split("ALERT_", 1)[1].replace("_", " ").lower()
    if options.client_certificate:
        return OriginTLSError(f"origin {url} refused the client certificate {options.client_certificate} ({alert})")
    requires = "may require" if reason == HANDSHAKE_FAILURE else "requires"
    return OriginTLSError(
        f"origin {url} {requires} a client certificate ({alert}); set originRequest clientCertificate and clientKey"
    )


def _tls_error(url: str, server_name: str | None, options: OriginRequest, exc: BaseException) -> OriginTLSError:
    if refused := certificate_refused(url, options, exc):
        return refused
    if isinstance(exc, ssl.SSLCertVerificationError):
        return OriginTLSError(
            f"origin {url} failed TLS verification for {server_name!r}: {exc.verify_message}; "
            "set originServerName and caPool, or noTLSVerify"
        )
    return OriginTLSError(f"origin {url}: TLS handshake failed: {getattr(exc, 'reason', None) or exc}")
