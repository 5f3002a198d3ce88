"""The per-source token bucket behind the tunnel listener's registration limit."""

import pytest

from edge.tunnels.ratelimit import SourceLimiter
from shared import protocol
from shared.errors import ProtocolError


def test_burst_then_rate_per_source_and_one_report_per_interval():
    limiter = SourceLimiter(rate=2.0, burst=3, report_interval=10.0)
    assert [limiter.check("a", 0.0)[0] for _ in range(3)] == [True] * 3
    assert limiter.check("a", 0.0) == (False, 1)  # reported at once
    assert [limiter.check("a", 0.1) for _ in range(5)] == [(False, 0)] * 5  # counted, not reported
    assert limiter.check("b", 0.1) == (True, 0)  # another source is untouched
    assert limiter.check("a", 0.6)[0] is True  # 0.6 s × 2/s refilled one token
    assert limiter.check("a", 0.6) == (False, 0)
    assert limiter.check("a", 10.0)[0] is True  # refilled (capped at the burst)
    for _ in range(2):
        limiter.check("a", 10.0)
    assert limiter.check("a", 10.0) == (False, 7)  # next interval: every refusal since the last report


def test_tracked_sources_are_bounded():
    limiter = SourceLimiter(rate=1.0, burst=1, max_sources=100)
    for i in range(1000):
        limiter.check(f"10.0.{i // 256}.{i % 256}", float(i) / 1000)
    assert len(limiter) <= 100


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        SourceLimiter(rate=0, burst=1)


def test_an_oversized_frame_header_fails_before_its_body_is_buffered():
    session = protocol.TunnelSession("edge")
    with pytest.raises(ProtocolError, match="a frame of"):
        session.receive_data(b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01")  # a DATA frame of 16 MiB
