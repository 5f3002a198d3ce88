"""The edge's metric objects: request observation, live session gauges, DNS rcodes."""

from types import SimpleNamespace

from dnslib import DNSRecord

from edge.dns.answer import rcode_name
from edge.routing.metrics import EdgeMetrics


def value(m: EdgeMetrics, name: str, **labels) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_observe_request_counts_by_host_and_status_class():
    m = EdgeMetrics()
    m.observe_request("App.example.com", 200, 0.02, 10, 300)
    m.observe_request("app.example.com", 204, 0.5, 0, 0)
    m.observe_request("app.example.com", 502, 1.5, 5, 20)
    assert value(m, "burrow_edge_requests_total", host="app.example.com", status_class="2xx") == 2
    assert value(m, "burrow_edge_requests_total", host="app.example.com", status_class="5xx") == 1
    assert value(m, "burrow_edge_request_duration_seconds_count", host="app.example.com") == 3
    assert value(m, "burrow_edge_request_duration_seconds_bucket", host="app.example.com", le="1.0") == 2
    assert value(m, "burrow_edge_request_bytes_total", host="app.example.com") == 15
    assert value(m, "burrow_edge_response_bytes_total", host="app.example.com") == 320


def test_sessions_and_streams_are_read_from_the_router_when_scraped():
    live = {"t1": [SimpleNamespace(active_streams=2), SimpleNamespace(active_streams=1)]}
    m = EdgeMetrics()
    m.watch_router(lambda: live)
    assert value(m, "burrow_edge_sessions", tunnel="t1") == 2
    assert value(m, "burrow_edge_active_streams", tunnel="t1") == 3
    live["t2"] = [SimpleNamespace(active_streams=0)]
    del live["t1"]
    assert value(m, "burrow_edge_sessions", tunnel="t1") is None
    assert value(m, "burrow_edge_sessions", tunnel="t2") == 1


def test_registrations_start_at_zero_for_both_results():
    m = EdgeMetrics()
    assert value(m, "burrow_edge_registrations_total", result="accepted") == 0
    m.registration("rejected")
    assert value(m, "burrow_edge_registrations_total", result="rejected") == 1


def test_rcode_name_reads_the_reply_header():
    reply = DNSRecord.question("x.test").reply()
    reply.header.rcode = 3
    assert rcode_name(reply.pack()) == "NXDOMAIN"
    reply.header.rcode = 5
    assert rcode_name(reply.pack()) == "REFUSED"
