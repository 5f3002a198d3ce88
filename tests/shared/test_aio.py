"""shared.aio: Signal (wakes every waiter, re-arms) and TaskPool (reuses finished tasks)."""

import pytest
import trio
import trio.testing

from shared.aio import Signal, TaskPool


async def test_signal_wakes_every_task_waiting_and_only_those():
    signal = Signal()
    woken = []

    async def waiter(name):
        await signal.wait()
        woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "a")
        nursery.start_soon(waiter, "b")
        await trio.testing.wait_all_tasks_blocked()
        signal.fire()
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(woken) == ["a", "b"]
        nursery.start_soon(waiter, "c")  # fired before it waited: it waits for the next fire
        await trio.testing.wait_all_tasks_blocked()
        assert "c" not in woken
        signal.fire()
    assert woken[-1] == "c"


async def test_a_cancelled_waiter_is_not_woken_later():
    signal = Signal()
    with trio.move_on_after(0.01) as scope:
        await signal.wait()
    assert scope.cancelled_caught
    signal.fire()  # would raise if it rescheduled the task that went away
    woken = []

    async def waiter():
        await signal.wait()
        woken.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        signal.fire()
    assert woken == [True]


async def test_task_pool_runs_every_item_and_reuses_tasks_that_finished():
    done = []
    tasks = set()

    async def job(item):
        tasks.add(trio.lowlevel.current_task())
        await trio.sleep(0)
        done.append(item)

    async with trio.open_nursery() as nursery:
        pool = TaskPool(nursery, job)
        for round_ in range(3):
            for index in range(4):
                pool.submit((round_, index))
            await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()  # the parked tasks end with the nursery
    assert sorted(done) == [(r, i) for r in range(3) for i in range(4)]
    assert len(tasks) == 4  # 12 jobs, 4 at a time: the first round's tasks ran the others


async def test_task_pool_parks_at_most_max_idle_tasks():
    async def job(item):
        await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        pool = TaskPool(nursery, job, max_idle=2)
        for index in range(5):
            pool.submit(index)
        await trio.testing.wait_all_tasks_blocked()
        assert len(nursery.child_tasks) == 2  # three exited: only two may park
        nursery.cancel_scope.cancel()
    assert not nursery.child_tasks


async def test_a_failing_job_reaches_the_nursery():
    async def job(item):
        raise ValueError(item)

    with pytest.raises(BaseExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            TaskPool(nursery, job).submit("bad")
    assert caught.group_contains(ValueError, match="bad")
