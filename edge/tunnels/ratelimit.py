"""A token bucket per source address (sans-IO: the caller passes the time).

The tunnel listener asks it before the TLS handshake, so a flood of
registrations from one address costs one socket accept each and leaves every
other address alone.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BURST = 100  # registrations one address may make at once (`--registration-burst`)
DEFAULT_RATE = 5.0  # then this many per second (`--registration-rate`)
REPORT_INTERVAL = 10.0  # seconds: one log line per limited address per interval
MAX_SOURCES = 10_000  # addresses tracked; full buckets are forgotten first


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    refused: int = 0  # since the last report
    reported: float | None = None


class SourceLimiter:
    """`burst` attempts at once from one source, refilled at `rate` per second."""

    def __init__(self, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST, report_interval: float = REPORT_INTERVAL,
                 max_sources: int = MAX_SOURCES) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self.report_interval = report_interval
        self.max_sources = max_sources
        self._buckets: dict[str, _Bucket] = {}

    def check(self, source: str, now: float) -> tuple[bool, int]:
        """Take a token for `source`. Returns (allowed, refusals to report now): the second
        is non-zero at most once per `report_interval` per source, and counts every refusal
        since the last report, so a flood is logged once per interval, not per attempt."""
        bucket = self._buckets.get(source)
        if bucket is None:
            self._make_room(now)
            bucket = self._buckets[source] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True, 0
        bucket.refused += 1
        if bucket.reported is not None and now - bucket.reported < self.report_interval:
            return False, 0
        refused, bucket.refused, bucket.reported = bucket.refused, 0, now
        return False, refused

    def _make_room(self, now: float) -> None:
        if len(self._buckets) < self.max_sources:
            return
        refill = self.burst / self.rate  # seconds after which any bucket is full again
        for source in [s for s, b in self._buckets.items() if now - b.stamp >= refill]:
            del self._buckets[source]
        while len(self._buckets) >= self.max_sources:  # all busy: forget the oldest-seen
            del self._buckets[min(self._buckets, key=lambda s: self._buckets[s].stamp)]

    def __len__(self) -> int:
        return len(self._buckets)
