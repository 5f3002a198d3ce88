"""The garbage collector's settings for a long-running process.

Each request allocates a few dozen containers (coroutines, tasks, dicts) that live for
the request; with CPython's default first threshold (700), a generation-0 collection runs
every few dozen requests and promotes what is in flight to older generations, whose
collections then walk the whole heap. Once start-up is over, `settle` moves what it
built out of the collector's sight (`gc.freeze`: it lives as long as the process) and
collects the youngest generation ten times less often: the same objects are freed, in
larger and rarer batches, and fewer short-lived ones are promoted.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # allocations between generation-0 collections (CPython's default: 700)

_thresholds: list[tuple[int, int, int]] = []  # the thresholds each unreleased `settle` replaced


def settle() -> None:
    """Start-up is over: freeze what it built and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    _thresholds.append((young, middle, old))
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def release() -> None:
    """The service that called `settle` is over (a test's, say): collect as before it.
    Nothing to do when `settle` was not reached."""
    if _thresholds:
        gc.unfreeze()
        gc.set_threshold(*_thresholds.pop())
