"""Requests and 5xx errors per hostname per minute over the last hour, for the dashboard.

A fixed ring of `MINUTES` slots per hostname, reset lazily as minutes pass; at most
`MAX_HOSTS` hostnames are kept (visitors choose Host headers, memory must not grow with them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MINUTES = 60  # the window the dashboard charts
MAX_HOSTS = 1000  # further hostnames are not recorded until the process restarts


@dataclass
class _Slot:
    minute: int = -1  # minutes since the epoch this slot counts
    requests: int = 0
    errors: int = 0


@dataclass(frozen=True)
class Series:
    """One hostname's last `MINUTES` minutes, oldest first; `start` is the first minute's epoch second."""

    start: int
    requests: tuple[int, ...]
    errors: tuple[int, ...]


class TrafficHistory:
    """Per-hostname per-minute request and 5xx counts (wall clock minutes)."""

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._rings: dict[str, list[_Slot]] = {}

    def record(self, host: str, status: int) -> None:
        """Count one finished request to `host` with response `status` (0: no response)."""
        if not host:
            return
        ring = self._rings.get(host)
        if ring is None:
            if len(self._rings) >= MAX_HOSTS:
                return
            ring = self._rings[host] = [_Slot() for _ in range(MINUTES)]
        minute = int(self._clock() // 60)
        slot = ring[minute % MINUTES]
        if slot.minute != minute:
            slot.minute, slot.requests, slot.errors = minute, 0, 0
        slot.requests += 1
        if status >= 500 or status == 0:
            slot.errors += 1

    def series(self, host: str) -> Series:
        """The last `MINUTES` minutes of `host`, ending with the current one (zeros if unseen)."""
        now = int(self._clock() // 60)
        first = now - MINUTES + 1
        ring = self._rings.get(host)
        requests, errors = [0] * MINUTES, [0] * MINUTES
        if ring is not None:
            for slot in ring:
                if first <= slot.minute <= now:
                    requests[slot.minute - first] = slot.requests
                    errors[slot.minute - first] = slot.errors
        return Series(first * 60, tuple(requests), tuple(errors))
