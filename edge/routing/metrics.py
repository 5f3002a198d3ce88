"""The edge's Prometheus metrics (`burrow_edge_*`), in a registry of its own.

Counters are bumped by small hooks (registration in `sessions`, one call per
DNS reply, one per visitor request from the proxy); session and stream gauges
are read from the router at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edge.routing.traffic import TrafficHistory
from shared.http_metrics import RequestMetrics

REGISTRATION_RESULTS = ("accepted", "rejected", "rate_limited")


class LiveSessions(Collector):
    """`burrow_edge_sessions` and `burrow_edge_active_streams` per tunnel, read when scraped.

    `live()` returns {tunnel id: [sessions]}, each session with an `active_streams` count.
    """

    def __init__(self, live: Callable[[], dict[str, Iterable]]) -> None:
        self._live = live

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sessions = GaugeMetricFamily("burrow_edge_sessions", "Registered connector sessions per tunnel.", labels=["tunnel"])
        streams = GaugeMetricFamily("burrow_edge_active_streams", "Open streams per tunnel, over all its sessions.", labels=["tunnel"])
        for tunnel_id, conns in sorted(self._live().items()):
            conns = list(conns)
            sessions.add_metric([tunnel_id], len(conns))
            streams.add_metric([tunnel_id], sum(conn.active_streams for conn in conns))
        yield sessions
        yield streams


class CertificateExpiry(Collector):
    """`burrow_edge_certificate_expiry_days` per stored certificate (`cert list` names), read when scraped."""

    def __init__(self, infos: Callable[[], Iterable]) -> None:
        self._infos = infos

    def collect(self) -> Iterator[GaugeMetricFamily]:
        days = GaugeMetricFamily("burrow_edge_certificate_expiry_days", "Days until each certificate expires.", labels=["certificate"])
        for info in self._infos():
            days.add_metric([info.stem], round(info.days_left(), 3))
        yield days


class QuickTunnelCount(Collector):
    """`burrow_edge_quick_tunnels`: quick tunnels alive (serving, or within their grace), read when scraped."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("burrow_edge_quick_tunnels", "Quick tunnels alive: serving, or within their grace.", value=self._count())


class PortStats(Collector):
    """The public ports' figures, read when scraped: `stats()` yields (protocol, port, open now,
    opened since the port's listener opened, datagrams dropped) per listening port."""

    def __init__(self, stats: Callable[[], Iterable[tuple[str, int, int, int, int]]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["protocol", "port"]
        now = GaugeMetricFamily("burrow_edge_port_open", "Open TCP connections / UDP flows per public port.", labels=labels)
        opened = CounterMetricFamily(
            "burrow_edge_port_connections", "TCP connections / UDP flows a public port accepted.", labels=labels
        )
        dropped = CounterMetricFamily("burrow_edge_port_datagrams_dropped", "UDP datagrams a public port dropped.", labels=["port"])
        for protocol, port, open_now, total, lost in sorted(self._stats()):
            now.add_metric([protocol, str(port)], open_now)
            opened.add_metric([protocol, str(port)], total)
            if protocol == "udp":
                dropped.add_metric([str(port)], lost)
        yield now
        yield opened
        yield dropped


class EdgeMetrics:
    """Every edge metric, registered in `registry` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_*: CPU, memory, open files (Linux)
        self.registrations = Counter(
            "burrow_edge_registrations", "Tunnel registrations by result (accepted or rejected).", ["result"], registry=self.registry
        )
        for result in REGISTRATION_RESULTS:
            self.registrations.labels(result)
        self.dns_queries = Counter("burrow_edge_dns_queries", "DNS replies sent, by response code.", ["rcode"], registry=self.registry)
        self._dns_rcodes: dict[str, Counter] = {}  # rcode → its child: labels() costs more than the count
        self.http = RequestMetrics(self.registry, "burrow_edge", "visitors")
        self.traffic = TrafficHistory()  # the dashboard's last hour per hostname, kept even when not served
        self.private_flows = Counter(
            "burrow_edge_private_flows", "Private-network flows (access socks) by tunnel, protocol and SOCKS reply.",
            ["tunnel", "protocol", "reply"], registry=self.registry,
        )
        self.private_bytes = Counter(
            "burrow_edge_private_bytes", "Bytes of private-network flows by tunnel; in: client to private network.",
            ["tunnel", "direction"], registry=self.registry,
        )
        self.peer_forwarded = Counter(
            "burrow_edge_peer_forwarded_requests", "Visitor requests sent to another edge (it held the tunnel's sessions).",
            registry=self.registry,
        )
        self.peer_served = Counter(
            "burrow_edge_peer_served_requests", "Requests another edge forwarded here, served from this edge's sessions.",
            registry=self.registry,
        )
        self.peer_connections = Counter(
            "burrow_edge_peer_connections", "Forwarding connections from other edges, by result (accepted, or refused: no valid token).",
            ["result"], registry=self.registry,
        )
        for result in ("accepted", "refused"):
            self.peer_connections.labels(result)
        self.private_open = Gauge(
            "burrow_edge_private_open_flows", "Private-network flows open now, by tunnel.", ["tunnel"], registry=self.registry
        )

    def watch_router(self, live: Callable[[], dict[str, Iterable]]) -> None:
        """Report the sessions and open streams `live()` returns at each scrape."""
        self.registry.register(LiveSessions(live))

    def watch_certificates(self, infos: Callable[[], Iterable]) -> None:
        """Report `burrow_edge_certificate_expiry_days` for the certificates `infos()` returns."""
        self.registry.register(CertificateExpiry(infos))

    def watch_quick_tunnels(self, count: Callable[[], int]) -> None:
        """Report `burrow_edge_quick_tunnels` as `count()` at each scrape."""
        self.registry.register(QuickTunnelCount(count))

    def watch_ports(self, stats: Callable[[], Iterable[tuple[str, int, int, int, int]]]) -> None:
        """Report the public ports' figures `stats()` returns at each scrape (see `PortStats`)."""
        self.registry.register(PortStats(stats))

    def registration(self, result: str) -> None:
        self.registrations.labels(result).inc()

    def dns_reply(self, rcode: str, count: int = 1) -> None:
        """Count `count` DNS replies with `rcode` (the server counts a batch of UDP replies at once)."""
        child = self._dns_rcodes.get(rcode)
        if child is None:
            child = self._dns_rcodes[rcode] = self.dns_queries.labels(rcode)
        child.inc(count)

    def observe_request(self, host: str, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        """Count one finished request to `host` (a routed hostname; pass "" for unknown ones)."""
        self.traffic.record(host, status)
        self.http.observe(host, status, seconds, bytes_in, bytes_out)

    def private_flow_opened(self, tunnel_id: str) -> None:
        self.private_open.labels(tunnel_id).inc()

    def private_flow_closed(self, tunnel_id: str) -> None:
        self.private_open.labels(tunnel_id).dec()

    def private_flow_done(self, flow: dict) -> None:
        """Count one finished private flow (`flow` as the access log has it; tunnel "-" if refused before routing)."""
        tunnel = flow["tunnel"] if flow["tunnel"] != "-" else ""
        self.private_flows.labels(tunnel, flow["protocol"], flow["reply"]).inc()
        if flow["bytes_in"] or flow["bytes_out"]:
            self.private_bytes.labels(tunnel, "in").inc(flow["bytes_in"])
            self.private_bytes.labels(tunnel, "out").inc(flow["bytes_out"])
