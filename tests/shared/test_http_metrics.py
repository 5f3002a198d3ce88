"""shared/http_metrics.py: the bounded host label and the per-hostname request metrics both sides keep."""

import pytest
from prometheus_client import CollectorRegistry

from shared.http_metrics import HostLabels, RequestMetrics, status_class

CLASSES = [(0, "0xx"), (101, "1xx"), (200, "2xx"), (304, "3xx"), (404, "4xx"), (504, "5xx")]
assert CLASSES


@pytest.mark.parametrize("status, label", CLASSES, ids=[label for _, label in CLASSES])
def test_status_class(status, label):
    assert status_class(status) == label


def test_host_labels_are_bounded_then_other():
    labels = HostLabels(limit=2)
    assert [labels(host) for host in ("A.test", "b.test", "c.test", "a.test", "")] == [
        "a.test", "b.test", "other", "a.test", "other",
    ]


def test_request_metrics_count_under_the_prefix_with_bounded_hosts():
    registry = CollectorRegistry()
    m = RequestMetrics(registry, "burrow_x", "peers")
    m.host_label.limit = 1
    m.observe("a.test", 200, 0.02, 10, 300)
    m.observe("a.test", 502, 1.5, 5, 20)
    m.observe("b.test", 200, 0.1, 0, 7)

    def value(name, **labels):
        return registry.get_sample_value(name, labels)

    assert value("burrow_x_requests_total", host="a.test", status_class="2xx") == 1
    assert value("burrow_x_requests_total", host="a.test", status_class="5xx") == 1
    assert value("burrow_x_requests_total", host="other", status_class="2xx") == 1
    assert value("burrow_x_requests_total", host="b.test", status_class="2xx") is None
    assert value("burrow_x_request_duration_seconds_bucket", host="a.test", le="1.0") == 1
    assert value("burrow_x_request_bytes_total", host="a.test") == 15
    assert value("burrow_x_response_bytes_total", host="other") == 7


def test_request_metrics_expose_cumulative_le_buckets_and_created_times():
    registry = CollectorRegistry()
    m = RequestMetrics(registry, "burrow_x", "peers")
    for seconds in (0.005, 0.0051, 100.0):  # on a bound, just above it, beyond the last
        m.observe("a.test", 200, seconds, 0, 0)

    def value(name, **labels):
        return registry.get_sample_value(name, {"host": "a.test", **labels})

    assert value("burrow_x_request_duration_seconds_bucket", le="0.005") == 1
    assert value("burrow_x_request_duration_seconds_bucket", le="0.01") == 2
    assert value("burrow_x_request_duration_seconds_bucket", le="60.0") == 2
    assert value("burrow_x_request_duration_seconds_bucket", le="+Inf") == 3
    assert value("burrow_x_request_duration_seconds_count") == 3
    assert value("burrow_x_request_duration_seconds_sum") == pytest.approx(100.0101)
    for created in ("burrow_x_request_duration_seconds_created", "burrow_x_request_bytes_created"):
        assert value(created) > 0
    assert value("burrow_x_requests_created", status_class="2xx") > 0
