"""Small trio helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import outcome
import trio


def _leaves(group: BaseExceptionGroup) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


@contextlib.contextmanager
def single_errors() -> Iterator[None]:
    """Re-raise the first real error out of a nursery's exception group.

    Groups holding only `trio.Cancelled` pass through untouched, so that
    cancel scopes still see their cancellation.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        _, rest = group.split(trio.Cancelled)
        if rest is None:
            raise
        raise next(_leaves(rest))  # noqa: B904 - the group is the context


async def wait_for_signal(*signals: int) -> None:
    """Return when one of `signals` arrives."""
    with trio.open_signal_receiver(*signals) as received:
        async for _ in received:
            return


class Signal:
    """Wakes the tasks waiting on it each time it fires, then re-arms.

    The waiting tasks are parked with trio's low-level calls: no `trio.Event` (and its
    parking lot) is built per wait, so waiting and firing cost little on hot paths.
    """

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: list = []  # trio tasks, in the order they began to wait

    async def wait(self) -> None:
        task = trio.lowlevel.current_task()
        waiting = self._waiting
        waiting.append(task)

        def abort(_: object) -> trio.lowlevel.Abort:  # cancelled while waiting: no longer woken
            waiting.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def fire(self) -> None:
        if waiting := self._waiting:
            self._waiting = []
            for task in waiting:
                trio.lowlevel.reschedule(task)


class TaskPool:
    """Runs `job(item)` for each submitted item in a task of `nursery`, as `start_soon` would,
    but a task whose job is done parks for the next item (up to `max_idle` parked at once)
    instead of exiting. Waking a parked task costs a few µs less than spawning one and
    seeing it exit. A job's error ends its task and reaches the nursery, as with
    `start_soon`; cancelling the nursery ends the parked tasks too."""

    __slots__ = ("_nursery", "_job", "_max_idle", "_idle")

    def __init__(self, nursery: trio.Nursery, job: Callable[[Any], Awaitable[None]], max_idle: int = 64) -> None:
        self._nursery = nursery
        self._job = job
        self._max_idle = max_idle
        self._idle: list = []  # parked trio tasks; the last parked is woken first

    def submit(self, item: object) -> None:
        if self._idle:
            trio.lowlevel.reschedule(self._idle.pop(), outcome.Value(item))
        else:
            self._nursery.start_soon(self._work, item)

    async def _work(self, item: object) -> None:
        job, idle = self._job, self._idle
        while True:
            await job(item)
            if len(idle) >= self._max_idle:
                return
            task = trio.lowlevel.current_task()
            idle.append(task)

            def abort(_: object) -> trio.lowlevel.Abort:
                idle.remove(task)
                return trio.lowlevel.Abort.SUCCEEDED

            item = await trio.lowlevel.wait_task_rescheduled(abort)
