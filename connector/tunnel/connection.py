"""One tunnel connection: dial the edge over TLS, register, serve its streams."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

import trio

from connector.egress.dialer import open_tcp_stream
from connector.egress.proxies import ProxyChoice
from shared import protocol, registration
from shared.credentials import Credentials
from shared.crypto import TUNNEL_ALPN, tunnel_client_context
from shared.errors import AuthError, ProtocolError, Unreachable
from shared.tls_socket import TLSSocketStream
from shared.transport import PING_INTERVAL, PING_TIMEOUT, StreamHandler, TunnelConnection
from shared.values import parse_hostport

log = logging.getLogger(__name__)

CLIENT_VERSION = "burrow/0.1.0"


@dataclass(frozen=True)
class DialLimits:
    connect_timeout: float = 10.0
    handshake_timeout: float = 10.0
    registration_timeout: float = 10.0
    read_size: int = 16 * 1024
    ping_interval: float = PING_INTERVAL  # `--heartbeat-interval`
    ping_timeout: float = PING_TIMEOUT  # `--heartbeat-timeout`: a session whose PING is unanswered this long is dead
    local_address: str | None = None  # dial from this address (`burrow tunnel --url --edge-bind-address`)


async def open_tunnel_connection(
    creds: Credentials, connector_id: str, index: int, limits: DialLimits = DialLimits(), warp_routing: bool = False,
    egress: ProxyChoice = ProxyChoice(), endpoint: str | None = None,
) -> tuple[TunnelConnection, registration.Registered]:
    """Dial `endpoint` (default: the credentials'), through the proxy `egress` picks for it if
    any, and register, announcing `warp_routing` (private-network flows welcome); raise AuthError
    when the edge rejects the credentials or the proxy ours. `connect_timeout` covers the proxy's
    handshake. Every edge is verified against the credentials' edge name."""
    edge = endpoint or creds.endpoint
    host, port = parse_hostport(edge)
    proxy = egress.for_host(host)
    where = edge if proxy is None else f"{edge} (through proxy {proxy})"
    try:
        with trio.fail_after(limits.connect_timeout):
            tcp = await open_tcp_stream(host, port, proxy, local_address=limits.local_address)
        tls = TLSSocketStream.wrap(tcp.socket, tunnel_client_context(creds.edge_ca), server_hostname=creds.edge_server_name)
        with trio.fail_after(limits.handshake_timeout):
            await tls.do_handshake()
        if tls.selected_alpn_protocol() != TUNNEL_ALPN:
            raise ProtocolError(f"{where} is not a Burrow edge tunnel port (ALPN {tls.selected_alpn_protocol()!r})")
        register = registration.Register(
            creds.tunnel_id, creds.tunnel_secret.value, connector_id, index, CLIENT_VERSION,
            warp_routing=warp_routing, features=frozenset({registration.FEATURE_PORTS, registration.FEATURE_STATUS, registration.FEATURE_EDGES}),
        )
        with trio.fail_after(limits.registration_timeout):
            await tls.send_all(register.to_wire())
            answer, rest = await _read_answer(tls, limits.read_size)
    except trio.TooSlowError:
        raise Unreachable(f"edge {where} did not answer in time") from None
    except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise Unreachable(f"cannot reach the edge at {where}: {reason}") from exc
    if isinstance(answer, registration.Rejected):
        await trio.aclose_forcefully(tls)
        if answer.retryable:
            raise Unreachable(f"edge {where} refused the connection: {answer.reason}")
        raise AuthError(f"the edge at {where} refused this connector: {answer.reason}")
    connection = TunnelConnection(
        tls, protocol.TunnelSession("connector"), initial_data=rest,
        ping_interval=limits.ping_interval, ping_timeout=limits.ping_timeout,
    )
    return connection, answer


async def _read_answer(tls: TLSSocketStream, read_size: int):
    reader = registration.RegistrationReader(expect_magic=False)
    while True:
        data = await tls.receive_some(read_size)
        if not data:
            raise trio.BrokenResourceError("edge closed the connection during registration")
        message, rest = reader.feed(data)
        if isinstance(message, (registration.Registered, registration.Rejected)):
            return message, rest
        if message is not None:
            raise ProtocolError("unexpected registration answer")


async def serve_tunnel_connection(connection: TunnelConnection, handler: StreamHandler) -> None:
    """Serve streams until the session ends; raise what ended it."""
    await connection.serve(handler)
