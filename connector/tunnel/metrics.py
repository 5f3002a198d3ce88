"""The connector's Prometheus metrics (`burrow_connector_*`), in a registry of its own.

Session metrics are fed by the supervisor; request metrics by `StreamServer`, once
per served stream, with the same bounded `host` label as the edge's.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from connector.origins.balancer import Balancers
from connector.origins.errors import error_kind as origin_error_kind
from shared.errors import AuthError, BurrowError, ProtocolError, Unreachable
from shared.http_metrics import RequestMetrics

# Error kinds, by exception type (first match wins); a session the edge ended is "closed".
ERROR_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (AuthError, "auth"),
    (Unreachable, "unreachable"),
    (ProtocolError, "protocol"),
    (BurrowError, "other"),
)
CLOSED = "closed"
UPGRADE_PROTOCOLS = {b"websocket": "websocket", b"burrow-tcp": "tcp"}  # Upgrade token → label; others: "other"


def error_kind(exc: BaseException | None) -> str:
    """The `kind` label for a connection that failed with `exc` (None: the edge closed it)."""
    if exc is None:
        return CLOSED
    return next((kind for cls, kind in ERROR_KINDS if isinstance(exc, cls)), "other")


class ConnectorMetrics:
    """Every connector metric, registered in `registry` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_*: CPU, memory, open files (Linux)
        self.sessions = Gauge("burrow_connector_sessions", "Tunnel sessions registered with the edge right now.", registry=self.registry)
        self.reconnects = Counter(
            "burrow_connector_reconnects", "Times a tunnel connection was dialled again after a failure or a closed session.",
            registry=self.registry,
        )
        self.errors = Counter(
            "burrow_connector_connection_errors", "Tunnel connections that failed or ended, by kind.", ["kind"], registry=self.registry
        )
        for _, kind in ERROR_KINDS:
            self.errors.labels(kind)
        self.errors.labels(CLOSED)
        self.http = RequestMetrics(self.registry, "burrow_connector", "the edge")
        self.concurrent_requests = Gauge(
            "burrow_connector_concurrent_requests", "Requests being served right now, upgraded streams included.",
            registry=self.registry,
        )
        self.origin_errors = Counter(
            "burrow_connector_origin_errors", "Origin failures while serving requests, by hostname and kind.", ["host", "kind"],
            registry=self.registry,
        )
        self.upgrades = Counter(
            "burrow_connector_upgrades", "Requests switched to WebSocket or TCP (101), by hostname and protocol.",
            ["host", "protocol"], registry=self.registry,
        )

    def watch_requests(self, in_flight: Callable[[], int]) -> None:
        """Report `in_flight()` as `burrow_connector_concurrent_requests` at each scrape."""
        self.concurrent_requests.set_function(in_flight)

    def watch_pools(self, balancers: Balancers) -> None:
        """Report the state of each pool's origins at each scrape (`burrow_connector_pool_*`)."""
        self.registry.register(_PoolCollector(balancers))

    def upgraded(self, host: str, token: bytes) -> None:
        """Count a request the origin switched to the protocol of Upgrade `token` (b"websocket", …)."""
        self.upgrades.labels(self.http.host_label(host), UPGRADE_PROTOCOLS.get(token, "other")).inc()

    def origin_failed(self, host: str, exc: BaseException) -> None:
        self.origin_errors.labels(self.http.host_label(host), origin_error_kind(exc)).inc()

    def connection_failed(self, exc: BaseException | None) -> None:
        self.errors.labels(error_kind(exc)).inc()


class _PoolCollector:
    """Each pool origin's state, read from the balancers at scrape time: nothing is done per request."""

    def __init__(self, balancers: Balancers) -> None:
        self.balancers = balancers

    def collect(self):
        def family(kind, name: str, text: str, labels=("pool", "origin")):
            return kind(f"burrow_connector_pool_{name}", text, labels=list(labels))

        healthy = family(GaugeMetricFamily, "origin_healthy", "1 while the origin is in its pool's rotation, 0 while out of it.")
        in_flight = family(GaugeMetricFamily, "origin_in_flight", "Requests the origin is serving now.")
        requests = family(CounterMetricFamily, "origin_requests", "Requests sent to the origin (a retried request counts for each).")
        failed = family(CounterMetricFamily, "origin_checks_failed", "Health checks the origin failed.")
        retries = family(CounterMetricFamily, "retries", "Requests sent again to another origin after a failed connect.", ["pool"])
        for balancer in self.balancers:
            name = balancer.pool.name
            for member in balancer.members:
                healthy.add_metric([name, member.url], int(member.healthy))
                in_flight.add_metric([name, member.url], member.in_flight)
                requests.add_metric([name, member.url], member.requests)
                failed.add_metric([name, member.url], member.checks_failed)
            retries.add_metric([name], balancer.retries)
        return [healthy, in_flight, requests, failed, retries]
