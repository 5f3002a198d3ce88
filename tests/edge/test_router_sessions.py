"""Router bookkeeping for management: live info per tunnel, dropping a deleted tunnel's sessions."""

from __future__ import annotations

import pytest

from edge.router import Router
from edge.zone import Zones
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
