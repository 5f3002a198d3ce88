"""Per-hostname HTTP request metrics, kept alike by the edge and the connector.

`RequestMetrics` counts finished requests by hostname and status class, with
their durations and body bytes, under a side's prefix (`burrow_edge`,
`burrow_connector`). `HostLabels` bounds the `host` label: visitors choose Host
headers, and Prometheus must not grow with them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Request durations: from a fast cache hit to a long poll (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MAX_HOST_LABELS = 1000  # beyond this many distinct hostnames, requests count under OTHER_HOST
OTHER_HOST = "other"


def status_class(status: int) -> str:
    """`2xx` for 200…299; `0xx` for 0, a request that ended before any response."""
    return f"{status // 100}xx"


class HostLabels:
    """The `host` label for a hostname: itself for the first `limit` distinct ones, then OTHER_HOST."""

    def __init__(self, limit: int = MAX_HOST_LABELS) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, host: str) -> str:
        host = (host or OTHER_HOST).lower()
        if host in self._seen:
            return host
        if len(self._seen) >= self.limit:
            return OTHER_HOST
        self._seen.add(host)
        return host


class RequestMetrics:
    """`PREFIX_requests_total{host, status_class}`, `PREFIX_request_duration_seconds{host}`,
    `PREFIX_request_bytes_total{host}` and `PREFIX_response_bytes_total{host}`.

    `peer` names who sends the requests, for the help texts ("visitors", "the edge").
    """

    def __init__(self, registry: CollectorRegistry, prefix: str, peer: str) -> None:
        self.requests = Counter(
            f"{prefix}_requests", "HTTP requests by hostname and status class (2xx…5xx).", ["host", "status_class"],
            registry=registry,
        )
        self.duration = Histogram(
            f"{prefix}_request_duration_seconds", "Time from request head to the end of the response, by hostname.",
            ["host"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.request_bytes = Counter(
            f"{prefix}_request_bytes", f"Request body bytes received from {peer}, by hostname.", ["host"], registry=registry
        )
        self.response_bytes = Counter(
            f"{prefix}_response_bytes", f"Response body bytes sent to {peer}, by hostname.", ["host"], registry=registry
        )
        self.host_label = HostLabels()
        self._children: dict[tuple[str, int], tuple] = {}  # (host label, status // 100) → its metric children

    def observe(self, host: str, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        """Count one finished request to `host` ("" for a hostname nobody routes)."""
        label = self.host_label(host)
        key = (label, status // 100)
        children = self._children.get(key)
        if children is None:  # once per (host label, class): a bounded set
            children = self._children[key] = (
                self.requests.labels(label, status_class(status)), self.duration.labels(label),
                self.request_bytes.labels(label), self.response_bytes.labels(label),
            )
        requests, duration, received, sent = children
        requests.inc()
        duration.observe(seconds)
        received.inc(bytes_in)
        sent.inc(bytes_out)
