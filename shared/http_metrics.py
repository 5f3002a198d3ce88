"""Per-hostname HTTP request metrics, kept alike by the edge and the connector.

`RequestMetrics` counts finished requests by hostname and status class, with
their durations and body bytes, under a side's prefix (`burrow_edge`,
`burrow_connector`). `HostLabels` bounds the `host` label: visitors choose Host
headers, and Prometheus must not grow with them.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

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
    A custom collector: each request adds to plain tallies (a few list operations, where
    four prometheus-client metric children cost ~8 µs a request with their locks), and a
    scrape turns them into the same families, `*_created` samples included.
    """

    def __init__(self, registry: CollectorRegistry, prefix: str, peer: str) -> None:
        self.prefix = prefix
        self.help = {
            "requests": "HTTP requests by hostname and status class (2xx…5xx).",
            "duration": "Time from request head to the end of the response, by hostname.",
            "request_bytes": f"Request body bytes received from {peer}, by hostname.",
            "response_bytes": f"Response body bytes sent to {peer}, by hostname.",
        }
        self.host_label = HostLabels()
        self._requests: dict[tuple[str, int], list[float]] = {}  # (host label, status // 100) → [count, created]
        self._hosts: dict[str, list[float]] = {}  # host label → [created, duration sum, bytes in, bytes out, *bucket counts]
        registry.register(self)

    def observe(self, host: str, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        """Count one finished request to `host` ("" for a hostname nobody routes)."""
        label = self.host_label(host)
        key = (label, status // 100)
        if (requests := self._requests.get(key)) is None:  # once per (host label, class): a bounded set
            requests = self._requests[key] = [0, time.time()]
        requests[_COUNT] += 1
        if (tally := self._hosts.get(label)) is None:
            tally = self._hosts[label] = [time.time(), 0.0, 0, 0] + [0] * (len(DURATION_BUCKETS) + 1)
        tally[_SUM] += seconds
        tally[_RECEIVED] += bytes_in
        tally[_SENT] += bytes_out
        tally[_BUCKETS + bisect_left(DURATION_BUCKETS, seconds)] += 1  # le: the first bound ≥ seconds

    def collect(self) -> Iterator[Metric]:
        prefix, help = self.prefix, self.help
        requests = CounterMetricFamily(f"{prefix}_requests", help["requests"], labels=["host", "status_class"])
        for (label, klass), (count, created) in list(self._requests.items()):
            requests.add_metric([label, status_class(klass * 100)], count, created=created)
        duration = HistogramMetricFamily(f"{prefix}_request_duration_seconds", help["duration"], labels=["host"])
        received = CounterMetricFamily(f"{prefix}_request_bytes", help["request_bytes"], labels=["host"])
        sent = CounterMetricFamily(f"{prefix}_response_bytes", help["response_bytes"], labels=["host"])
        for label, tally in list(self._hosts.items()):
            created = tally[_CREATED]
            cumulative = list(accumulate(tally[_BUCKETS:]))
            bounds = [floatToGoString(bound) for bound in DURATION_BUCKETS] + ["+Inf"]
            duration.add_metric([label], list(zip(bounds, cumulative)), tally[_SUM])
            duration.add_sample(f"{prefix}_request_duration_seconds_created", {"host": label}, created)
            received.add_metric([label], tally[_RECEIVED], created=created)
            sent.add_metric([label], tally[_SENT], created=created)
        yield from (requests, duration, received, sent)


_COUNT = 0  # in a (host, class) entry: its requests; its creation time follows
_CREATED, _SUM, _RECEIVED, _SENT, _BUCKETS = range(5)  # in a host's tally: then one count per bucket
