"""Small trio helpers."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator

import trio

TLS_RECORD = 16 * 1024  # the most plaintext one TLS record carries
TLS_OVERHEAD = 1024  # room for the records' headers and tags in a refill


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
    """`stream.receive_some(max_bytes)`, plus, on a `trio.SSLStream`, every TLS record it can
    decrypt without waiting, up to `max_bytes` in all.

    Trio's SSLStream returns one record (≤ 16 KiB) per call, and each call is a trip through
    the scheduler; a bulk transfer pays that per record unless the records already received
    are taken together. So after one ordinary `receive_some` this decrypts what the
    SSLStream holds, refilling it with non-blocking reads of its socket while there is more,
    all in the same step. The first read asks for one record at most: CPython allocates
    the size asked for before reading, and a record is all the SSLStream returns anyway.
    Uses SSLStream internals (its incoming buffer, SSLObject and socket); other streams
    read as usual. Anything unusual (a partial record with nothing more on the socket, the
    peer's close_notify or EOF, a TLS or socket error) ends the batch: the next
    `receive_some` meets it as it would have.
    """
    incoming = getattr(stream, "_incoming", None)
    if not isinstance(incoming, ssl.MemoryBIO):
        return await stream.receive_some(max_bytes)
    data = await stream.receive_some(min(max_bytes, TLS_RECORD))
    if not data or len(data) >= max_bytes:
        return data
    tls: ssl.SSLObject = stream._ssl_object  # type: ignore[attr-defined]
    sock = _raw_socket(stream)
    chunks = [data]
    size = len(data)
    try:
        while size < max_bytes:
            try:
                chunk = tls.read(min(TLS_RECORD, max_bytes - size))
            except ssl.SSLWantReadError:  # the rest of a record, or the next one, may be on the socket
                if sock is None or not (raw := sock.recv(max_bytes - size + TLS_OVERHEAD)):
                    break  # EOF: the next receive_some reads it again
                incoming.write(raw)
                continue
            if not chunk:  # close_notify
                break
            chunks.append(chunk)
            size += len(chunk)
    except (ssl.SSLError, OSError):  # BlockingIOError: nothing more for now; errors: met by the next read
        pass
    return b"".join(chunks)


def _raw_socket(stream: trio.abc.ReceiveStream) -> socket.socket | None:
    """The non-blocking OS socket under a `trio.SSLStream` over a `trio.SocketStream`."""
    transport = getattr(stream, "transport_stream", None)
    if not isinstance(transport, trio.SocketStream):
        return None
    return getattr(transport.socket, "_sock", None)


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
