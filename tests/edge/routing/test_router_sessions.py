"""Router bookkeeping for management: live info per tunnel, dropping a deleted tunnel's sessions."""

from __future__ import annotations

import pytest

from edge.dns.zone import Zone, Zones
from edge.routing.router import Router, TunnelBusy
from shared.errors import TunnelUnavailable


class FakeConnection:
    accepting = True
    active_streams = 0

    def __init__(self) -> None:
        self.drained_with: float | None = None

    async def drain(self, grace: float) -> None:
        self.drained_with = grace


async def test_drop_closes_every_session_and_refuses_new_ones() -> None:
    router = Router(Zones())
    a, b, other = FakeConnection(), FakeConnection(), FakeConnection()
    router.add("t1", a, "info-a")
    router.add("t1", b, "info-b")
    router.add("t2", other, "info-o")
    assert router.connections("t1") == ["info-a", "info-b"] and router.count("t1") == 2
    router.remove("t1", a)
    assert router.connections("t1") == ["info-b"]
    assert await router.drop("t1", 1.5) == 1
    assert b.drained_with == 1.5 and a.drained_with is None
    assert router.count("t1") == 0 and router.connections("t1") == []
    with pytest.raises(TunnelUnavailable, match="deleted"):
        router.add("t1", FakeConnection())
    with pytest.raises(TunnelUnavailable):
        router.pick("t1")
    assert router.pick("t2") is other and other.drained_with is None


def test_pick_takes_the_least_loaded_accepting_session_and_counts_every_stream() -> None:
    router = Router(Zones(), max_streams_per_tunnel=10)
    busy, idle, closing = FakeConnection(), FakeConnection(), FakeConnection()
    busy.active_streams, idle.active_streams, closing.accepting = 5, 1, False
    for conn in (busy, idle, closing):
        router.add("t", conn)
    assert router.pick("t") is idle
    assert router.pick("t", avoid=(idle,)) is busy
    with pytest.raises(TunnelUnavailable):
        router.pick("t", avoid=(idle, busy))
    closing.active_streams = 4  # a draining session's streams count towards the limit too
    with pytest.raises(TunnelBusy):
        router.pick("t")


def test_tunnel_for_follows_each_new_zone_snapshot() -> None:
    zone = Zone("example.test", {"app.example.test": "t1.tunnels.example.test"}, frozenset({"t1"}))
    router = Router(Zones((zone,)))
    assert router.tunnel_for("app.example.test") == "t1" and router.tunnel_for("nope.example.test") is None
    router.update_zones(Zones((Zone("example.test", {"nope.example.test": "t1.tunnels.example.test"}, frozenset({"t1"})),)))
    assert router.tunnel_for("app.example.test") is None and router.tunnel_for("nope.example.test") == "t1"


def test_port_streams_go_only_to_sessions_that_registered_the_feature() -> None:
    router = Router(Zones())
    old, new = FakeConnection(), FakeConnection()
    router.add("t1", old, "info-old")  # a connector from before public ports: no features
    with pytest.raises(TunnelUnavailable, match="no connector that serves ports"):
        router.pick("t1", feature="ports")
    router.add("t1", new, "info-new", frozenset({"ports"}))
    new.active_streams = 5  # busier, yet the only one that serves ports
    assert router.pick("t1", feature="ports") is new
    assert router.pick("t1") is old
    router.remove("t1", new)
    with pytest.raises(TunnelUnavailable):
        router.pick("t1", feature="ports")
