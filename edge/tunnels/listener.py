"""The tunnel listener: TLS, registration against the registry, then the session."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import trio

from edge.registry.models import Connection
from edge.registry.store import Registry
from edge.routing.router import Router
from edge.tunnels.quick_service import QuickService
from edge.tunnels.ratelimit import SourceLimiter
from shared import protocol, registration
from shared.errors import AuthError, BurrowError, ProtocolError
from shared.tls_socket import TLSSocketStream
from shared.transport import PING_INTERVAL, PING_TIMEOUT, TunnelConnection

log = logging.getLogger(__name__)

PEER_ALPN = "burrow-edge-peer/1"  # another edge forwarding visitor requests (edge/forwarding/), not a connector
SPREAD_REASON = "this edge worker holds the tunnel already and another holds none; reconnecting reaches another"


@dataclass(frozen=True)
class SessionLimits:
    handshake_timeout: float = 10.0
    registration_timeout: float = 10.0
    read_size: int = 16 * 1024
    record_timeout: float = 5.0  # removing a connection's row when it ends (shielded)
    ping_interval: float = PING_INTERVAL  # the edge's own liveness check of each session
    ping_timeout: float = PING_TIMEOUT


class TunnelListener:
    """Accepts connector connections and hands registered sessions to the router."""

    def __init__(
        self, registry: Registry, router: Router, edge_id: str, limits: SessionLimits = SessionLimits(),
        on_registration: Callable[[str], None] = lambda result: None,
        limiter: SourceLimiter | None = None, quick: QuickService | None = None, edges: Callable[[], list[str]] = lambda: [],
        spread: Callable[[str], bool] = lambda tunnel_id: True,
        peers: Callable[[TLSSocketStream, str], Awaitable[None]] | None = None,
    ):
        self.registry = registry
        self.quick = quick  # quick tunnels: verified in memory, no connection rows
        self.limiter = limiter if limiter is not None else SourceLimiter()
        self.router = router
        self.edge_id = edge_id
        self.limits = limits
        self.on_registration = on_registration  # "accepted" / "rejected" / "rate_limited" (metrics)
        self.edges = edges  # the live edges' tunnel endpoints, listed in each registration reply
        self.spread = spread  # False: this session belongs elsewhere (another worker lacks the tunnel); retry
        self.peers = peers  # serves a connection that chose `PEER_ALPN` (another edge); None: refused

    async def handle(self, stream: TLSSocketStream) -> None:
        """Serve one connector connection until it ends."""
        peer = _peer(stream)
        if not self._admit(peer):
            await trio.aclose_forcefully(stream)  # before the handshake: a flood costs an accept each
            return
        try:
            with trio.fail_after(self.limits.handshake_timeout):
                await stream.do_handshake()
            from_edge = stream.selected_alpn_protocol() == PEER_ALPN
            if from_edge and self.peers is None:
                raise ProtocolError("forwarding between edges is off")
        except (trio.BrokenResourceError, trio.TooSlowError, BurrowError) as exc:
            log.info("session.refused peer=%s error=%s", peer, exc or type(exc).__name__)
            await trio.aclose_forcefully(stream)
            return
        if from_edge:  # another edge forwarding visitor requests: its own checks (edge/forwarding/)
            await self.peers(stream, peer)
            return
        try:
            with trio.fail_after(self.limits.registration_timeout):
                register, rest = await self._read_registration(stream)
                tunnel_id, quick = await self._authorize(stream, register, peer)
        except (trio.BrokenResourceError, trio.TooSlowError, BurrowError) as exc:
            log.info("session.refused peer=%s error=%s", peer, exc or type(exc).__name__)
            await trio.aclose_forcefully(stream)
            return
        try:
            if not self.spread(tunnel_id):
                log.info("session.spread tunnel=%s peer=%s", tunnel_id, peer)
                await _reject(stream, registration.Rejected(SPREAD_REASON, retryable=True))
                return
            await self._serve(stream, register, rest, tunnel_id, peer, quick)
        finally:
            if quick:
                self.quick.closed(tunnel_id)

    async def _serve(
        self, stream: TLSSocketStream, register: registration.Register, rest: bytes, tunnel_id: str, peer: str, quick: bool
    ) -> None:
        record = Connection(
            id=str(uuid.uuid4()),
            tunnel_id=tunnel_id,
            connector_id=register.connector_id,
            conn_index=register.conn_index,
            edge_id=self.edge_id,
            client_version=register.client_version,
            source=peer,
            connected_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        try:
            if not quick:
                await trio.to_thread.run_sync(self.registry.add_connection, record)
        except AuthError as exc:  # the tunnel was deleted since the secret was checked
            self.on_registration("rejected")
            log.info("session.refused peer=%s error=%s", peer, exc)
            await _reject(stream, exc)
            return
        connection_id = record.id
        try:
            await stream.send_all(registration.Registered(connection_id, self.edge_id, tuple(self.edges())).to_wire())
            connection = TunnelConnection(
                stream, protocol.TunnelSession("edge"), initial_data=rest,
                ping_interval=self.limits.ping_interval, ping_timeout=self.limits.ping_timeout,
            )
            features = register.features | ({registration.WARP_ROUTING} if register.warp_routing else frozenset())
            self.router.add(tunnel_id, connection, record, features)
            self.on_registration("accepted")
        except (trio.BrokenResourceError, BurrowError) as exc:
            log.info("session.refused peer=%s error=%s", peer, exc)
            if not quick:
                await self._forget(record)
            await trio.aclose_forcefully(stream)
            return
        log.info(
            "session.registered tunnel=%s connector=%s index=%d connection=%s peer=%s warp_routing=%s",
            tunnel_id, register.connector_id, register.conn_index, connection_id, peer, register.warp_routing,
        )
        try:
            await connection.serve()
            log.info("session.closed tunnel=%s connection=%s", tunnel_id, connection_id)
        except BurrowError as exc:
            log.warning("session.lost tunnel=%s connection=%s error=%s", tunnel_id, connection_id, exc)
        finally:
            self.router.remove(tunnel_id, connection)
            if not quick:
                await self._forget(record)

    def _admit(self, peer: str) -> bool:
        """Take a token from the source address's bucket; log a refused flood once per interval."""
        source = peer.rsplit(":", 1)[0]
        allowed, refused = self.limiter.check(source, trio.current_time())
        if not allowed:
            self.on_registration("rate_limited")
            if refused:
                log.warning(
                    "session.rate_limited source=%s refused=%d burst=%d rate=%g/s next_report_in=%gs",
                    source, refused, self.limiter.burst, self.limiter.rate, self.limiter.report_interval,
                )
        return allowed

    async def _forget(self, record: Connection) -> None:
        """Delete the connection's row, even while being cancelled (bounded); a crash leaves it stale."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.limits.record_timeout
            try:
                await trio.to_thread.run_sync(self.registry.remove_connection, record.id)
            except Exception as exc:  # sqlite3 errors: the row stays stale until the next cleanup
                log.warning("session.unrecorded connection=%s error=%s", record.id, exc)

    async def _read_registration(self, stream: TLSSocketStream) -> tuple[registration.Register, bytes]:
        reader = registration.RegistrationReader(expect_magic=True)
        while True:
            data = await stream.receive_some(self.limits.read_size)
            if not data:
                raise ProtocolError("connection closed before registration")
            try:
                message, rest = reader.feed(data)
            except ProtocolError as exc:
                await stream.send_all(registration.Rejected(str(exc), retryable=False).to_wire())
                raise
            if isinstance(message, registration.Register):
                return message, rest
            if message is not None:
                raise ProtocolError("expected a register message")

    async def _authorize(self, stream: TLSSocketStream, register: registration.Register, peer: str) -> tuple[str, bool]:
        """(tunnel id, whether it is a quick tunnel); a quick tunnel's session is counted from here."""
        try:
            if self.quick is not None and self.quick.tunnels.verify(register.tunnel_id, register.secret) is not None:
                self.quick.opened(register.tunnel_id)
                return register.tunnel_id, True
            tunnel = await trio.to_thread.run_sync(
                self.registry.verify_tunnel, register.tunnel_id, register.secret
            )
        except AuthError as exc:
            self.on_registration("rejected")
            await stream.send_all(registration.Rejected(str(exc), retryable=False).to_wire())
            raise
        return tunnel.id, False


async def _reject(stream: TLSSocketStream, answer: AuthError | registration.Rejected) -> None:
    if isinstance(answer, AuthError):
        answer = registration.Rejected(str(answer), retryable=False)
    try:
        await stream.send_all(answer.to_wire())
    except trio.BrokenResourceError:
        pass
    await trio.aclose_forcefully(stream)


def _peer(stream: TLSSocketStream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()
    except (AttributeError, OSError):
        return "?"
    return f"{host}:{port}"
