"""EdgeChooser: 4 HA connections over the live edges, moved off an edge that failed."""

from __future__ import annotations

from connector.tunnel.edges import AVOID_FOR, EdgeChooser

A, B, C = "127.0.0.11:7844", "127.0.0.12:7844", "127.0.0.13:7844"


def spread(chooser: EdgeChooser, now: float = 0.0) -> list[str]:
    return [chooser.endpoint_for(index, now) for index in range(4)]


def test_one_edge_until_a_reply_lists_more() -> None:
    chooser = EdgeChooser(A)
    assert spread(chooser) == [A] * 4
    chooser.learn([])  # an edge that lists none: nothing changes
    assert spread(chooser) == [A] * 4
    chooser.learn(["203.0.113.7:7844"])  # one edge, advertising another address: the configured one stays
    assert spread(chooser) == [A] * 4
    chooser.failed(A, 0.0)  # nowhere else to go: keep dialing it
    assert spread(chooser) == [A] * 4


def test_connections_spread_over_every_live_edge_in_one_order() -> None:
    chooser = EdgeChooser(A)
    chooser.learn([C, A, B])
    assert spread(chooser) == [A, B, C, A]
    other = EdgeChooser(B)
    other.learn([B, C, A])  # another edge lists itself first: same assignment
    assert spread(other) == spread(chooser)
    two = EdgeChooser(A)
    two.learn([A, B])
    assert len(set(spread(two))) == 2


def test_a_failed_edge_is_avoided_then_tried_again() -> None:
    chooser = EdgeChooser(A)
    chooser.learn([A, B, C])
    chooser.failed(A, 10.0)
    assert A not in spread(chooser, 11.0) and set(spread(chooser, 11.0)) == {B, C}
    assert A in spread(chooser, 10.0 + AVOID_FOR)
    chooser.learn([B, C])  # the edges' list dropped it
    assert set(spread(chooser, 100.0)) == {B, C}
    chooser.learn([B])  # one edge left: all on it
    assert spread(chooser, 100.0) == [B] * 4


def test_learn_says_when_connections_belong_elsewhere() -> None:
    chooser = EdgeChooser(A)
    assert chooser.learn([A]) is False  # one edge: the configured endpoint stays
    assert chooser.learn([A, B]) is True
    assert chooser.learn([B, A]) is False  # the same edges, listed by the other one
    assert chooser.learn([A, B, C]) is True
    assert chooser.learn([A, C]) is True
