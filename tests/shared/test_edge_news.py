"""The `edges` stream's head: what an edge encodes, the connector decodes; anything else is refused."""

from __future__ import annotations

import pytest

from shared import edge_news
from shared.events import RequestHead
from shared.registration import MAX_EDGES


def test_the_live_edges_round_trip_in_order() -> None:
    endpoints = ["198.18.0.2:7844", "edge-b.example.com:7844"]
    assert edge_news.decode(edge_news.encode(endpoints)) == tuple(endpoints)


def test_at_most_max_edges_are_sent() -> None:
    endpoints = [f"198.18.0.{n}:7844" for n in range(MAX_EDGES + 4)]
    assert edge_news.decode(edge_news.encode(endpoints)) == tuple(endpoints[:MAX_EDGES])


@pytest.mark.parametrize(
    "head, reason",
    [
        (RequestHead(b"PUT", b"/other", b"", b"https", ((b"edge", b"198.18.0.2:7844"),)), "target"),
        (RequestHead(b"PUT", b"/edges", b"", b"https", ()), "1 to"),
        (RequestHead(b"PUT", b"/edges", b"", b"https", ((b"edge", b"198.18.0.2:7844"),) * (MAX_EDGES + 1)), "1 to"),
        (RequestHead(b"PUT", b"/edges", b"", b"https", ((b"edge", b"no-port"),)), "HOST:PORT"),
        (RequestHead(b"PUT", b"/edges", b"", b"https", ((b"edge", "éé:1".encode()),)), "HOST:PORT"),
        (RequestHead(b"PUT", b"/edges", b"", b"https", ((b"edge", b"a" * 300 + b":1"),)), "HOST:PORT"),
    ],
)
def test_anything_else_is_refused(head: RequestHead, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        edge_news.decode(head)
