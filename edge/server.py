"""`burrow-edge serve`: every listener in one nursery, plus the registry snapshot refresher."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial

import trio

from edge.access.gate import open_gate, refresh_all
from edge.access.private import PrivateNetworks
from edge.admin.api import DROP_GRACE, create_api
from edge.admin.dashboard import create_dashboard
from edge.admin.quick_api import quick_routes
from edge.certs.acme import AcmeManager
from edge.certs.challenges import Challenges
from edge.certs.store import CertStore
from edge.dns.server import DnsServer
from edge.forwarding.edges import EdgePeers, peer_client_context
from edge.registry.changes import ChangeFeed
from edge.registry.dialect import PostgresDialect
from edge.registry.ports import DEFAULT_MAX_PER_ACCOUNT as DEFAULT_MAX_PORTS_PER_ACCOUNT
from edge.registry.store import Registry
from edge.routing.metrics import EdgeMetrics
from edge.routing.proxy import Exchange, Proxy, send_page
from edge.routing.router import DEFAULT_MAX_STREAMS_PER_TUNNEL, Router
from edge.tunnels.edge_news import EdgeNews
from edge.tunnels.listener import PEER_ALPN, SessionLimits, TunnelListener
from edge.tunnels.membership import Membership
from edge.tunnels.quick import QuickSettings, QuickTunnels
from edge.tunnels.quick_service import QuickService
from edge.tunnels.ratelimit import DEFAULT_BURST, DEFAULT_RATE, SourceLimiter
from edge.visitors.http1 import Http1Limits
from edge.visitors.http2_guards import Http2Limits
from edge.visitors.http_redirect import HttpRedirect
from edge.visitors.https import ALPN, FrontendOptions, HttpsFrontend, harden
from edge.visitors.public_ports import PublicPorts
from edge.visitors.udp_port import FlowLimits
from edge.workers.peers import Peers
from shared import heap
from shared.aio import single_errors
from shared.crypto import TUNNEL_ALPN
from shared.edge_config import EdgeConfig
from shared.errors import BurrowError, ConfigError
from shared.files import write_private
from shared.half_close import accept_half_close
from shared.tls_socket import TLSSocketListener
from shared.values import format_hostport

log = logging.getLogger(__name__)

ZONE_REFRESH_INTERVAL = 5.0  # picks up writes made by other processes (CLI); on PostgreSQL also the ChangeFeed
LISTEN_FILE = "listen.json"
DEFAULT_GRACE_PERIOD = 30.0  # `burrow-edge serve --grace-period`
HEARTBEAT_INTERVAL = 10.0
HEARTBEAT_TIMEOUT = 15.0
CERT_REFRESH_INTERVAL = 2.0  # picks up `burrow-edge cert add/remove` made while serving


@dataclass
class WorkerRole:
    """What one of `--workers N` brings to `serve` (see edge/workers/)."""

    edge_id: str
    sockets: dict[str, list[socket.socket]]  # "https", "tunnel", "http" (SO_REUSEPORT), "dns" (UDP, TCP): the supervisor's
    peers: Peers
    tunnels_changed: Callable[[frozenset[str]], None]  # the tunnels with a session here changed
    barrier: Callable[[], Awaitable[None]]  # returns once every worker's visitor requests are done
    registry_changed: Callable[[], Awaitable[None]]  # this worker's API wrote to the registry: the others refresh
    refresh: Callable[[], Awaitable[None]] | None = None  # set by `serve`: re-read routes and policies


async def _refresh_everywhere(refresh: Callable[[], Awaitable[None]], tell_others: Callable[[], Awaitable[None]]) -> None:
    await refresh()
    await tell_others()


async def _refresh_worker(refresh: Callable[[], Awaitable[None]], registry: Registry, router: Router) -> None:
    """Another worker's API wrote to the registry: re-read it, and close this worker's sessions of
    tunnels deleted meanwhile (as the API does for its own)."""
    await refresh()
    for tunnel_id in await trio.to_thread.run_sync(registry.deleted, list(router.live())):
        await router.drop(tunnel_id, DROP_GRACE)


class InFlight:
    """Counts visitor requests in the proxy, so a drain knows when the last one finished.

    While draining, a request that arrives on a kept-alive connection gets a 503.
    """

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.count = 0
        self.draining = False
        self._idle = trio.Event()
        self._idle.set()

    async def handle(self, exchange: Exchange) -> None:
        if self.draining:
            await send_page(exchange, 503, "edge", "the edge is shutting down; retry")
            return
        self.count += 1
        self._idle = trio.Event() if self.count == 1 else self._idle
        try:
            await self.proxy.handle(exchange)
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


async def drain(
    listeners: list[TLSSocketListener], router: Router, in_flight: InFlight, grace: float,
    frontend: HttpsFrontend | None = None, barrier: Callable[[], Awaitable[None]] | None = None,
    forwarding: EdgePeers | None = None,
) -> None:
    """Graceful stop: refuse new connections, tell visitors (`Connection: close`, GOAWAY),
    announce the drain on every tunnel session, and let in-flight requests finish for up
    to `grace` seconds.

    A worker (`barrier` given) keeps its sessions until its own visitors are done and then
    `barrier()` returns (every worker's are): until then other workers may forward to them.
    Connections other edges forward on (`forwarding`) drain like sessions: their requests
    finish, new ones go to another edge."""
    for listener in listeners:
        await trio.aclose_forcefully(listener)
    if frontend is not None:
        frontend.drain()
    log.info("edge.draining grace=%gs sessions=%d requests=%d", grace, len(router.all_sessions()), in_flight.count)
    in_flight.draining = True
    with trio.move_on_after(grace) as scope:
        if barrier is not None:
            await in_flight.wait_idle()
            await barrier()
        async with trio.open_nursery() as nursery:
            for connection in [*router.all_sessions(), *(forwarding.accepted if forwarding is not None else ())]:
                nursery.start_soon(_drain_session, connection, grace)
            await in_flight.wait_idle()
    log.info("edge.drained timed_out=%s requests_cut=%d", scope.cancelled_caught, in_flight.count)


async def _accept(scope: trio.CancelScope, handler_nursery: trio.Nursery, services: list) -> None:
    with scope:
        async with trio.open_nursery() as nursery:
            for handler, listeners in services:
                nursery.start_soon(partial(trio.serve_listeners, handler, listeners, handler_nursery=handler_nursery))


async def _drain_session(connection, grace: float) -> None:
    try:
        await connection.drain(grace)
    except (BurrowError, trio.BrokenResourceError, trio.ClosedResourceError):
        await trio.aclose_forcefully(connection.transport)


async def _follow_other_edges(refresh: Callable[[], Awaitable[None]], membership: Membership) -> None:
    """Another edge wrote to the shared registry: its routes and policies, and who is live."""
    await refresh()
    await membership.refresh()


async def _refresh_certs(certs: CertStore) -> None:
    while True:
        await trio.sleep(CERT_REFRESH_INTERVAL)
        certs.refresh()  # a few stat() calls; files are read only when they changed


class ZoneRefresher:
    """Keeps the router's zone snapshot in step with the registry.

    The admin API awaits `refresh` after each write; `run` also polls, for
    writes made by other processes (`burrow-edge account revoke`).
    """

    def __init__(self, registry: Registry, router: Router, zone_names: list[str]) -> None:
        self.registry = registry
        self.router = router
        self.zone_names = zone_names

    async def refresh(self) -> None:
        zones = await trio.to_thread.run_sync(self.registry.zones, self.zone_names)
        self.router.update_zones(zones)

    async def run(self) -> None:
        while True:
            await trio.sleep(ZONE_REFRESH_INTERVAL)
            await self.refresh()


@contextlib.contextmanager
def _binding(purpose: str, address: tuple[str, int]) -> Iterator[None]:
    """Turn a failure to bind into one clear line (port in use, or below 1024 without privileges)."""
    try:
        with single_errors():
            yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen for {purpose} on {format_hostport(address)}: {reason}") from exc


async def _open_tls_listeners(
    purpose: str, address: tuple[str, int], context: ssl.SSLContext, bound: list[socket.socket] | None = None
) -> list[TLSSocketListener]:
    """TLS listeners on `address`, or on the sockets `bound` already (a worker's, from the supervisor)."""
    if bound is not None:
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock)) for sock in bound]
    else:
        host, port = address
        with _binding(purpose, address):
            listeners = await trio.open_tcp_listeners(port, host=host or None)
    return [TLSSocketListener(listener, context) for listener in listeners]


def _bound(listeners: list[TLSSocketListener]) -> tuple[str, int]:
    host, port, *_ = listeners[0].transport_listener.socket.getsockname()
    return host, port


def check_dns_off(cfg: EdgeConfig) -> None:
    """`dns-listen: off` cannot go with ACME: the zone's wildcard certificate needs dns-01 answers."""
    if cfg.dns_listen is None and cfg.acme_directory is not None:
        raise ConfigError("ACME needs the edge's DNS server (dns-01 for the zone's wildcard): dns-listen cannot be off")


async def serve(
    cfg: EdgeConfig,
    *,
    shutdown: trio.Event | None = None,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    heartbeat_interval: float = HEARTBEAT_INTERVAL,
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
    registration_rate: float = DEFAULT_RATE,
    registration_burst: int = DEFAULT_BURST,
    metrics: EdgeMetrics | None = None,
    http1_limits: Http1Limits = Http1Limits(),
    frontend_options: FrontendOptions = FrontendOptions(),
    max_streams_per_tunnel: int = DEFAULT_MAX_STREAMS_PER_TUNNEL,
    quick_tunnels: QuickSettings | None = None,
    flow_limits: FlowLimits = FlowLimits(),
    max_ports_per_account: int = DEFAULT_MAX_PORTS_PER_ACCOUNT,
    worker: WorkerRole | None = None,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the edge until cancelled, or until `shutdown` is set: then drain for up to
    `grace_period` seconds and return. `started()` reports the bound addresses.
    `quick_tunnels`: offer quick tunnels with these limits (None: off).

    As one of `--workers N` (`worker`), the listeners are the supervisor's sockets, the
    edge id is shared, and requests for tunnels held elsewhere go to the worker holding them."""
    check_dns_off(cfg)
    registry = Registry.open(cfg.registry)
    try:
        challenges = Challenges()
        certs = CertStore.load(cfg.certs_dir, cfg.zones, required=cfg.acme_directory is None)  # ACME fills an empty store
        certs.challenge_context = challenges.tls_alpn_context
        edge_id = worker.edge_id if worker is not None else str(uuid.uuid4())
        bound = worker.sockets if worker is not None else {}
        router = Router(registry.zones(list(cfg.zones)), max_streams_per_tunnel)
        metrics = metrics if metrics is not None else EdgeMetrics()  # a throwaway registry unless served
        metrics.watch_router(router.live)
        metrics.watch_certificates(lambda: certs.infos)
        refresher = ZoneRefresher(registry, router, list(cfg.zones))
        gate = await open_gate(registry, cfg.home, f"https://{cfg.zone}")
        https_context = accept_half_close(harden(certs.server_context(ALPN, acme_tls=True)))  # upgraded byte pipes
        https_listeners = await _open_tls_listeners("HTTPS", cfg.https_listen, https_context, bound.get("https"))
        tunnel_context = harden(certs.server_context([TUNNEL_ALPN, PEER_ALPN]))
        tunnel_context.minimum_version = ssl.TLSVersion.TLSv1_3
        tunnel_listeners = await _open_tls_listeners("tunnels", cfg.tunnel_listen, tunnel_context, bound.get("tunnel"))
        addresses = {"https": _bound(https_listeners), "tunnel": _bound(tunnel_listeners)}
        tunnel_endpoint = format_hostport((cfg.public_ip, addresses["tunnel"][1]))

        port_ranges = {"tcp": cfg.tcp_ports, "udp": cfg.udp_ports}

        def edge_info() -> dict:
            ports = {f"{kind}_ports": str(ports) for kind, ports in port_ranges.items() if ports is not None}
            return {"zone": cfg.zone, "zones": list(cfg.zones), "tunnel_endpoint": tunnel_endpoint, **ports}

        public_ports = PublicPorts(registry, router, cfg.https_listen[0], cfg.tcp_ports, cfg.udp_ports, flow_limits)
        metrics.watch_ports(public_ports.stats)

        private = PrivateNetworks(registry, router, metrics)
        await private.refresh()

        async def refresh_here() -> None:
            await refresh_all(refresher, gate, private)
            await public_ports.sync()  # a port routed or released: its listener opens or closes before the API answers

        refresh = refresh_here
        if worker is not None:  # a write through this worker's API reaches the others' snapshots too
            worker.refresh = partial(_refresh_worker, refresh_here, registry, router)
            refresh = partial(_refresh_everywhere, refresh_here, worker.registry_changed)

        quick = QuickService(QuickTunnels(cfg.zone, quick_tunnels), router, tunnel_endpoint) if quick_tunnels else None
        if quick is not None:
            metrics.watch_quick_tunnels(partial(len, quick.tunnels))
        dashboard = create_dashboard(registry, lambda: list(cfg.zones), refresh, router, metrics.traffic, edge_id)
        extra_routes = [*quick_routes(quick), dashboard]
        api = create_api(
            registry, edge_info, refresh, live=router, edge_id=edge_id, extra_routes=extra_routes, port_ranges=port_ranges,
            max_ports_per_account=max_ports_per_account,
        )
        proxy = Proxy(router, api, frozenset({*cfg.public_ips, *cfg.zones}), metrics, gate, private)
        in_flight = InFlight(proxy)
        if worker is not None:
            proxy.peers = worker.peers
            router.on_change = worker.tunnels_changed
        http2_limits = Http2Limits(header_block_timeout=http1_limits.request_head_timeout)  # `--header-timeout`
        frontend = HttpsFrontend(in_flight, http1_limits, http2_limits, options=frontend_options)
        limits = SessionLimits(ping_interval=heartbeat_interval, ping_timeout=heartbeat_timeout)
        limiter = SourceLimiter(registration_rate, registration_burst)
        dns = DnsServer(lambda: router.zones, cfg.public_ips, metrics.dns_reply, challenges.txt)  # the router's snapshot, read per query
        news = EdgeNews(router)
        membership = Membership(
            registry, cfg.name, edge_id, cfg.public_ips, tunnel_endpoint, lambda: len(router.all_sessions()), dns.set_addresses,
            news.changed,
        )
        await trio.to_thread.run_sync(membership.join)
        edges = None  # `--workers N` forward between their own processes, on SQLite only
        if worker is None:
            ca_pem = cfg.ca_path.read_text() if cfg.ca_path.exists() else None
            edges = EdgePeers(registry, router, membership, gate.signer, cfg.zone, peer_client_context(ca_pem), metrics)
            proxy.peers = edges
        stale = registry.cleanup_connections(edge_id)  # rows of runs no longer live: their sessions are gone
        spread = partial(worker.peers.spread, router) if worker is not None else (lambda tunnel_id: True)
        sessions = TunnelListener(
            registry, router, edge_id=edge_id, limits=limits, on_registration=metrics.registration, limiter=limiter,
            quick=quick, edges=membership.tunnel_endpoints, spread=spread, peers=edges.handle if edges is not None else None,
        )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(refresher.run)
            nursery.start_soon(gate.run)
            nursery.start_soon(private.run)
            if isinstance(registry.dialect, PostgresDialect):  # other edges write too: follow them at once
                await nursery.start(ChangeFeed(registry.dialect, partial(_follow_other_edges, refresh, membership)).run)
            nursery.start_soon(_refresh_certs, certs)
            nursery.start_soon(membership.run)
            nursery.start_soon(news.run)
            if quick is not None:
                nursery.start_soon(quick.run)
            if worker is not None:
                await nursery.start(worker.peers.serve, router)
            else:
                await nursery.start(edges.run)
            accepting = trio.CancelScope()  # cancelled on drain; the handlers live on in `nursery`
            nursery.start_soon(_accept, accepting, nursery, [(frontend.handle, https_listeners), (sessions.handle, tunnel_listeners)])
            if cfg.dns_listen is not None:  # `dns-listen: off`: the zone's DNS is served elsewhere
                with _binding("DNS", cfg.dns_listen):
                    addresses["dns"] = await nursery.start(dns.serve, cfg.dns_listen, tuple(bound["dns"]) if "dns" in bound else None)
            if cfg.http_listen is not None:
                with _binding("HTTP", cfg.http_listen):
                    plain = HttpRedirect(
                        challenges, addresses["https"][1], serves=proxy.serves, proxy=in_flight.handle, exempt=cfg.http_redirect_exempt,
                        api_hosts=proxy.api_hosts, limits=http1_limits, max_connections_per_ip=frontend_options.max_connections_per_ip,
                    )
                    addresses["http"] = await nursery.start(plain.serve, cfg.http_listen, bound.get("http"))
            if cfg.acme_directory is not None:
                nursery.start_soon(AcmeManager(cfg, certs, challenges, quick_tunnels=quick is not None).run)
            if public_ports.enabled:
                await nursery.start(public_ports.run)
            listening = {name: format_hostport(addr) for name, addr in addresses.items()}
            if worker is None:  # else the supervisor writes it, once every worker listens
                write_private(cfg.home / LISTEN_FILE, json.dumps(listening))
            log.info(
                "edge.listening https=%s tunnel=%s zone=%s edge=%s name=%s registry=%s stale_connections_removed=%d",
                listening["https"], listening["tunnel"], ",".join(cfg.zones), edge_id, cfg.name, registry.dialect.name, stale,
            )
            task_status.started(addresses)
            heap.settle()
            if shutdown is not None:
                await shutdown.wait()
                accepting.cancel()
                public_ports.stop_accepting()
                barrier = worker.barrier if worker is not None else None
                await drain([*https_listeners, *tunnel_listeners], router, in_flight, grace_period, frontend, barrier, edges)
                await trio.to_thread.run_sync(membership.leave)  # out of every edge's DNS at their next heartbeat
                nursery.cancel_scope.cancel()
    finally:
        heap.release()
        registry.close()
