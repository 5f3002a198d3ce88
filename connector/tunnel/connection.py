"""One tunnel connection: dial the edge over TLS, register, serve its streams."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

import trio

from shared import protocol, registration
from shared.credentials import Credentials
from shared.crypto import TUNNEL_ALPN, tunnel_client_context
from shared.errors import AuthError, ProtocolError, Unreachable
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


async def open_tunnel_connection(
    creds: Credentials, connector_id: str, index: int, limits: DialLimits = DialLimits(), endpoint: str | None = None,
) -> tuple[TunnelConnection, registration.Registered]:
    """Dial `endpoint` (default: the credentials') and register; raise AuthError when the edge
    rejects the credentials. Every edge is verified against the credentials' edge name."""
    where = endpoint or creds.endpoint
    host, port = parse_hostport(where)
    try:
        with trio.fail_after(limits.connect_timeout):
            tcp = await trio.open_tcp_stream(host, port)
        tls = trio.SSLStream(tcp, tunnel_client_context(creds.edge_ca), server_hostname=creds.edge_server_name)
        with trio.fail_after(limits.handshake_timeout):
            await tls.do_handshake()
        if tls.selected_alpn_protocol() != TUNNEL_ALPN:
            raise ProtocolError(f"{where} is not a Burrow edge tunnel port (ALPN {tls.selected_alpn_protocol()!r})")
        register = registration.Register(creds.tunnel_id, creds.tunnel_secret.value, connector_id, index, CLIENT_VERSION)
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


async def _read_answer(tls: trio.SSLStream, read_size: int):
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
