"""Forwarding between edges, both sides: `forward` sends a request for a tunnel with no session
here to a live edge whose sessions the registry records (`connections.edge_id`); `handle`
serves such requests from another edge, from this edge's own sessions only.

One connection per receiving edge run, opened with an authenticated hello (handshake.py) and
kept: a tunnel session on which the sending edge opens one stream per request (the visitor's
request head as the sending edge's proxy made it: X-Forwarded-For, request id, Access
assertion), bodies streamed both ways under the session's flow control.
"""

from __future__ import annotations

import logging
import math
import ssl

import trio

from edge.access.keys import KEY_RETIRE_AFTER, Signer
from edge.dns.zone import normalize_host
from edge.forwarding import handshake
from edge.registry.models import EdgeInfo
from edge.registry.store import Registry
from edge.routing.metrics import EdgeMetrics
from edge.routing.proxy import replayable, send_page
from edge.routing.router import Router
from edge.routing.stream_exchange import StreamExchange, serve_forwarded
from edge.tunnels.listener import PEER_ALPN
from edge.tunnels.membership import Membership
from shared import protocol
from shared.errors import AuthError, BurrowError, ProtocolError, TunnelUnavailable
from shared.events import RequestHead
from shared.tls_socket import TLSSocketStream
from shared.transport import TunnelConnection
from shared.tunnel_stream import StreamRefused, TunnelStream
from shared.values import parse_hostport

log = logging.getLogger(__name__)

DIAL_TIMEOUT = 5.0  # seconds to connect, handshake and be answered by another edge
HELLO_TIMEOUT = 5.0  # seconds a dialing edge has to send its hello
UNREACHABLE_FOR = 5.0  # seconds an edge that failed a dial is skipped (no request waits on a dead edge's timeout)
HOLDERS_TTL = 1.0  # seconds a tunnel's holding edges, read from the registry, are reused
MAX_CACHED_TUNNELS = 4096  # tunnels whose holders are remembered at once
MAX_REMEMBERED_EDGES = 1024  # edge runs remembered as unreachable at once
KEYS_RELOAD_INTERVAL = 1.0  # at most one registry read a second for an unknown signing key
KEYS_MAX_AGE = 60.0  # seconds the registry's signing keys are reused (a retired key drops out)


def peer_client_context(ca_pem: str | None) -> ssl.SSLContext:
    """How an edge dials another: TLS 1.3, the certificate checked as connectors check it
    (`ca_pem` pinned, e.g. the dev CA; otherwise the system store)."""
    context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols([PEER_ALPN])
    return context


class EdgePeers:
    """This edge among the others for forwarding (see the module docstring)."""

    def __init__(
        self, registry: Registry, router: Router, membership: Membership, signer: Signer, server_name: str,
        context: ssl.SSLContext, metrics: EdgeMetrics,
    ) -> None:
        self.registry = registry
        self.router = router
        self.membership = membership  # the live edges, from the heartbeats
        self.signer = signer
        self.server_name = server_name  # the zone: the name on every edge's certificate
        self.context = context
        self.metrics = metrics
        self._connections: dict[str, TunnelConnection] = {}  # edge run id → its connection
        self.accepted: set[TunnelConnection] = set()  # connections other edges opened here (drained with the sessions)
        self._dialing: dict[str, trio.Lock] = {}
        self._unreachable: dict[str, float] = {}  # edge run id → when its last failed dial ended
        self._holders: dict[str, tuple[float, tuple[str, ...]]] = {}  # tunnel → (read at, edge run ids)
        self._keys: dict[str, dict] = {}  # kid → public JWK, from the registry
        self._keys_read_at = -math.inf
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Home of the connections this edge dials and accepts, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # Sending side ------------------------------------------------------------------

    async def forward(self, exchange, tunnel_id: str, head: RequestHead, send) -> None:
        """`send` the exchange to a live edge holding a session of the tunnel (TunnelUnavailable if none)."""
        for edge in await self._holders_of(tunnel_id):
            connection = await self._connection(edge)
            if connection is None:
                continue
            self.metrics.peer_forwarded.inc()
            try:
                await send(exchange, connection, head)
                return
            except StreamRefused:
                if not replayable(head) or exchange.response_started:
                    raise
        raise TunnelUnavailable(f"tunnel {tunnel_id} has no connector")

    async def _holders_of(self, tunnel_id: str) -> list[EdgeInfo]:
        """The other live edges holding a session of the tunnel, the one with most first."""
        me = self.membership.me.run_id
        others = {edge.run_id: edge for edge in self.membership.live if edge.run_id != me}
        if not others:  # one edge: nothing to ask the registry
            return []
        read_at, run_ids = self._holders.get(tunnel_id, (-math.inf, ()))
        if trio.current_time() - read_at > HOLDERS_TTL:
            try:
                rows = await trio.to_thread.run_sync(self.registry.list_connections, tunnel_id)
            except Exception as exc:  # the registry is down: the last answer, if any
                log.warning("peer.holders_unknown tunnel=%s error=%s", tunnel_id, exc)
                return [others[run_id] for run_id in run_ids if run_id in others]
            counts: dict[str, int] = {}
            for row in rows:
                counts[row.edge_id] = counts.get(row.edge_id, 0) + 1
            run_ids = tuple(sorted(counts, key=lambda run_id: -counts[run_id]))
            if len(self._holders) >= MAX_CACHED_TUNNELS:
                self._holders.clear()
            self._holders[tunnel_id] = (trio.current_time(), run_ids)
        return [others[run_id] for run_id in run_ids if run_id in others]

    async def _connection(self, edge: EdgeInfo) -> TunnelConnection | None:
        """The open connection to `edge`, dialed if need be; None while it is unreachable."""
        async with self._dialing.setdefault(edge.run_id, trio.Lock()):
            connection = self._connections.get(edge.run_id)
            if connection is not None and connection.accepting:
                return connection
            if trio.current_time() - self._unreachable.get(edge.run_id, -math.inf) < UNREACHABLE_FOR:
                return None
            try:
                connection = await self._dial(edge)
            except (OSError, ssl.SSLError, trio.BrokenResourceError, trio.TooSlowError, BurrowError) as exc:
                log.info("peer.unreachable edge=%s endpoint=%s error=%s", edge.name, edge.tunnel_endpoint, exc or type(exc).__name__)
                if len(self._unreachable) >= MAX_REMEMBERED_EDGES:
                    self._unreachable.clear()
                self._unreachable[edge.run_id] = trio.current_time()
                return None
            self._unreachable.pop(edge.run_id, None)
            self._connections[edge.run_id] = connection
            self._nursery.start_soon(self._run, edge, connection)
            return connection

    async def _dial(self, edge: EdgeInfo) -> TunnelConnection:
        host, port = parse_hostport(edge.tunnel_endpoint)
        token = handshake.peer_token(self.signer, self.membership.me.name, edge.run_id)
        with trio.fail_after(DIAL_TIMEOUT):
            tcp = await trio.open_tcp_stream(host, port)
            tls = TLSSocketStream.wrap(tcp.socket, self.context, server_hostname=self.server_name)
            try:
                await tls.do_handshake()
                if tls.selected_alpn_protocol() != PEER_ALPN:
                    raise ProtocolError(f"edge {edge.name} does not accept forwarded requests")
                await tls.send_all(handshake.hello(token))
                answer = b""
                while len(answer) < len(handshake.ACCEPTED):
                    data = await tls.receive_some(len(handshake.ACCEPTED) - len(answer))
                    if not data:
                        break
                    answer += data
                if answer != handshake.ACCEPTED:
                    raise AuthError(f"edge {edge.name} refused this edge's token")
            except BaseException:
                await trio.aclose_forcefully(tls)
                raise
        return TunnelConnection(tls, protocol.TunnelSession("edge"))

    async def _run(self, edge: EdgeInfo, connection: TunnelConnection) -> None:
        try:
            await connection.serve()
        except BurrowError as exc:
            log.debug("peer.closed edge=%s error=%s", edge.name, exc)
        finally:
            if self._connections.get(edge.run_id) is connection:
                del self._connections[edge.run_id]

    # Receiving side ----------------------------------------------------------------

    async def handle(self, stream: TLSSocketStream, peer: str) -> None:
        """Serve one connection from another edge (TLS done, `PEER_ALPN` chosen) until it ends."""
        reader = handshake.HelloReader()
        try:
            with trio.fail_after(HELLO_TIMEOUT):
                token, rest = None, b""
                while token is None:
                    data = await stream.receive_some(handshake.MAX_HELLO)
                    if not data:
                        raise ProtocolError("left before its hello")
                    token, rest = reader.feed(data)
            sender = await self._verify(token)
            await stream.send_all(handshake.ACCEPTED)
        except (trio.BrokenResourceError, trio.TooSlowError, BurrowError) as exc:
            self.metrics.peer_connections.labels("refused").inc()
            log.warning("peer.refused source=%s error=%s", peer, exc or type(exc).__name__)
            try:
                with trio.move_on_after(1):
                    await stream.send_all(handshake.REFUSED)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await trio.aclose_forcefully(stream)
            return
        self.metrics.peer_connections.labels("accepted").inc()
        log.info("peer.accepted edge=%s source=%s", sender, peer)
        connection = TunnelConnection(stream, protocol.TunnelSession("connector"), initial_data=rest)
        self.accepted.add(connection)
        try:
            await connection.serve(self._serve_stream)
        except (BurrowError, trio.BrokenResourceError) as exc:
            log.debug("peer.lost edge=%s error=%s", sender, exc)
        finally:
            self.accepted.discard(connection)

    async def _verify(self, token: str) -> str:
        kid = handshake.token_kid(token)
        age = trio.current_time() - self._keys_read_at
        if age > KEYS_MAX_AGE or (kid not in self._keys and age > KEYS_RELOAD_INTERVAL):
            self._keys_read_at = trio.current_time()
            published = await trio.to_thread.run_sync(self.registry.access_keys, KEY_RETIRE_AFTER)
            self._keys = {jwk["kid"]: jwk for jwk in published}
        return handshake.verify_token(token, self._keys, self.membership.me.run_id)

    async def _serve_stream(self, stream: TunnelStream) -> None:
        """One request another edge forwarded: served from a session here, never forwarded again."""
        self.metrics.peer_served.inc()
        host = normalize_host(stream.head.authority.decode("latin-1"))
        tunnel_id = self.router.tunnel_for(host)
        if tunnel_id is None:
            await send_page(StreamExchange(stream), 404, "edge", f"no tunnel serves {host}")
            return
        await serve_forwarded(stream, self.router, tunnel_id)
