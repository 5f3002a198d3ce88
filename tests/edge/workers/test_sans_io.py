"""The sans-IO parts of `--workers`: the control channel's framing, the peer hello, the metrics merge."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.registry import Collector

from edge.workers.control import LineDecoder, encode
from edge.workers.metrics_merge import merge
from edge.workers.peers import HelloReader, hello
from shared.errors import ProtocolError


def test_control_messages_survive_any_split():
    wire = encode({"type": "tunnels", "ids": ["a", "b"]}) + encode({"type": "metrics", "text": "x 1\n# y\n"})
    for cut in range(len(wire) + 1):
        decoder = LineDecoder()
        assert decoder.feed(wire[:cut]) + decoder.feed(wire[cut:]) == [
            {"type": "tunnels", "ids": ["a", "b"]}, {"type": "metrics", "text": "x 1\n# y\n"},
        ]


def test_control_refuses_an_endless_line_and_garbage():
    with pytest.raises(ProtocolError):
        LineDecoder(limit=10).feed(b"x" * 11)
    with pytest.raises(ProtocolError):
        LineDecoder().feed(b"not json\n")


def test_peer_hello_names_the_tunnel_and_keeps_what_follows():
    reader = HelloReader()
    wire = hello("3f2a-tunnel") + b"\x00frame"
    assert reader.feed(wire[:5]) == (None, b"")
    assert reader.feed(wire[5:]) == ("3f2a-tunnel", b"\x00frame")


@pytest.mark.parametrize("wire", [b"GET / HTTP/1.1\n", b"burrow-peer/1 " + b"x" * 300, "burrow-peer/1 é\n".encode()])
def test_peer_hello_refuses_anything_else(wire):
    with pytest.raises(ProtocolError):
        HelloReader().feed(wire)


class Fixed(Collector):
    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


def exposition(requests: int, sessions: int, expiry: float) -> str:
    registry = CollectorRegistry()
    Counter("burrow_edge_requests", "r", ["host", "status_class"], registry=registry).labels("a.test", "2xx").inc(requests)
    Gauge("burrow_edge_sessions", "s", ["tunnel"], registry=registry).labels("t").set(sessions)
    Gauge("burrow_edge_certificate_expiry_days", "d", ["certificate"], registry=registry).labels("zone").set(expiry)
    return generate_latest(registry).decode()


def test_merge_adds_counts_and_keeps_shared_facts():
    registry = CollectorRegistry()
    registry.register(Fixed(merge({0: exposition(3, 1, 80.0), 1: exposition(5, 2, 80.5)})))
    text = generate_latest(registry).decode()
    assert 'burrow_edge_requests_total{host="a.test",status_class="2xx"} 8.0' in text
    assert 'burrow_edge_sessions{tunnel="t"} 3.0' in text
    assert 'burrow_edge_certificate_expiry_days{certificate="zone"} 80.5' in text
    assert 'burrow_edge_worker_requests_total{worker="0"} 3.0' in text
    assert 'burrow_edge_worker_requests_total{worker="1"} 5.0' in text
