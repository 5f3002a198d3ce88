"""Idle deadlines of many keep-alive connections, watched by one task.

A connection moves its deadline twice per request (infinite while it serves one, the
keep-alive timeout after), which as a trio cancel-scope deadline costs ~25 µs a request
(a new scope, or a deadline change through trio's registration). Here it is a float
store: the heap holds each timer at most once, at a time no later than its deadline,
and an entry that comes due early is put back at the deadline it has then. So the heap
changes once per timeout period of a connection, not once per request.

One `IdleTimers` per trio run (`IdleTimers.current()`), its task a trio system task:
it lives as long as the run, as the connections it watches can.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

import trio

PRUNE_MIN = 1_000  # entries of ended timers kept at most this many beyond twice the live ones


class IdleTimer:
    """One connection's deadline; `expire` is called once when it passes."""

    __slots__ = ("deadline", "queued_at", "expire")

    def __init__(self, expire: Callable[[], None]) -> None:
        self.deadline = math.inf  # math.inf: no timeout runs
        self.queued_at = math.inf  # the earliest heap entry of this timer (math.inf: none)
        self.expire = expire


class IdleTimers:
    """The heap of `IdleTimer`s and the task that expires them."""

    _run_local: trio.lowlevel.RunVar[IdleTimers] = trio.lowlevel.RunVar("idle_timers")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, IdleTimer]] = []
        self._order = itertools.count()  # ties broken by age, never by comparing timers
        self._live = 0
        self._sleep = trio.CancelScope()  # the task's wait; its deadline is the heap's first entry

    @classmethod
    def current(cls) -> IdleTimers:
        """This trio run's timers, their task started on first use."""
        try:
            return cls._run_local.get()
        except LookupError:
            timers = cls()
            cls._run_local.set(timers)
            trio.lowlevel.spawn_system_task(timers.run, name="edge.visitors.idle_timers")
            return timers

    def watch(self, timer: IdleTimer, deadline: float) -> None:
        """Start watching `timer`, to expire at `deadline`; `end` it when its connection ends."""
        self._live += 1
        self.set(timer, deadline)

    def set(self, timer: IdleTimer, deadline: float) -> None:
        """`timer` expires at `deadline` (trio time; math.inf: never)."""
        timer.deadline = deadline
        if deadline < timer.queued_at:
            timer.queued_at = deadline
            heapq.heappush(self._heap, (deadline, next(self._order), timer))
            if deadline < self._sleep.deadline:
                self._sleep.deadline = deadline

    def end(self, timer: IdleTimer) -> None:
        """`timer`'s connection ended: it never expires (its entries leave as they come due,
        or all at once when they outnumber the live timers)."""
        timer.deadline = math.inf
        self._live -= 1
        if len(self._heap) > 2 * self._live + PRUNE_MIN:
            for _, _, queued in self._heap:
                queued.queued_at = math.inf
            self._heap = [entry for entry in self._heap if entry[2].deadline != math.inf]
            heapq.heapify(self._heap)
            for at, _, queued in self._heap:
                queued.queued_at = min(queued.queued_at, at)

    def expire_due(self, now: float) -> None:
        """Expire the timers whose deadline passed; put back those whose deadline moved."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            timer.queued_at = math.inf  # (an older, later entry may remain: it only comes due early)
            if timer.deadline <= now:
                timer.deadline = math.inf
                timer.expire()
            elif timer.deadline != math.inf:
                self.set(timer, timer.deadline)

    async def run(self) -> None:
        while True:
            self._sleep = trio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf)
            with self._sleep:
                await trio.sleep_forever()
            self.expire_due(trio.current_time())
