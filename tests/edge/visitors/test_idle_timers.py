"""edge.visitors.idle_timers: deadlines moved by float stores, expired by one task."""

import math

import trio

from edge.visitors.idle_timers import PRUNE_MIN, IdleTimer, IdleTimers


def recording_timer(expired: list[float]) -> IdleTimer:
    return IdleTimer(lambda: expired.append(trio.current_time()))


async def test_a_timer_expires_once_at_its_deadline(autojump_clock):
    timers, expired = IdleTimers.current(), []
    timers.watch(recording_timer(expired), trio.current_time() + 5)
    await trio.sleep(20)
    assert expired == [5]


async def test_a_deadline_moved_later_expires_at_the_new_one(autojump_clock):
    timers, expired = IdleTimers.current(), []
    timer = recording_timer(expired)
    timers.watch(timer, 5)
    await trio.sleep(3)
    timers.set(timer, math.inf)  # serving a request: no timeout
    await trio.sleep(4)
    timers.set(timer, trio.current_time() + 10)  # the keep-alive wait after it
    await trio.sleep(30)
    assert expired == [17]


async def test_an_earlier_deadline_wakes_the_task(autojump_clock):
    timers, expired = IdleTimers.current(), []
    far, near = recording_timer(expired), recording_timer(expired)
    timers.watch(far, 100)
    await trio.sleep(1)
    timers.watch(near, 2)
    await trio.sleep(5)
    assert expired == [2]


async def test_an_ended_timer_never_expires_and_its_entries_are_pruned(autojump_clock):
    timers, expired = IdleTimers.current(), []
    ended = [recording_timer(expired) for _ in range(PRUNE_MIN + 10)]
    for timer in ended:
        timers.watch(timer, 50)
    kept = recording_timer(expired)
    timers.watch(kept, 60)
    for timer in ended:
        timers.end(timer)
    assert len(timers._heap) <= PRUNE_MIN + 1
    await trio.sleep(100)
    assert expired == [60]


async def test_one_set_of_timers_per_run():
    assert IdleTimers.current() is IdleTimers.current()
