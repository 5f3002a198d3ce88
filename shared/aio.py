"""Small trio helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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

    Unlike a fresh `trio.Event` per wait, it allocates nothing while nobody
    waits, so firing it is nearly free on hot paths.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: trio.Event | None = None

    async def wait(self) -> None:
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()

    def fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None
