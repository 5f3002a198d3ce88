"""Small trio helpers."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator

import trio

TLS_RECORD = 16 * 1024  # the most plaintext one TLS record carries


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


async def receive_records(stream: trio.abc.ReceiveStream, max_bytes: int) -> bytes:
    """`stream.receive_some(max_bytes)`, plus, on a `trio.SSLStream`, the TLS records it
    already received and can decrypt without reading again, up to `max_bytes` in all.

    Trio's SSLStream returns one record (≤ 16 KiB) per call, and each call is a trip
    through the scheduler; a bulk transfer pays that per record unless the records that
    came in with one socket read are taken together. Uses SSLStream internals (its
    incoming buffer and SSLObject); other streams read as usual. Anything unusual (a
    partial record, the peer's close_notify, a TLS error) ends the batch: the next
    `receive_some` meets it as it would have.
    """
    data = await stream.receive_some(max_bytes)
    incoming = getattr(stream, "_incoming", None)
    if not data or not isinstance(incoming, ssl.MemoryBIO) or not incoming.pending:
        return data
    tls: ssl.SSLObject = stream._ssl_object  # type: ignore[attr-defined]
    chunks = [data]
    size = len(data)
    try:
        while size < max_bytes and (incoming.pending or tls.pending()):
            chunk = tls.read(min(TLS_RECORD, max_bytes - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except ssl.SSLError:  # SSLWantReadError: the rest of a record is still on the way
        pass
    return b"".join(chunks)


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
