"""The send path of a visitor HTTP/2 connection: h2 queues frames, `Http2Writer` writes
them under one lock, so frames queued meanwhile (other streams', acks) share a write."""

from __future__ import annotations

from collections.abc import Callable

import h2.connection
import trio

from edge.visitors.http2_guards import Http2Limits

SEND_BATCH = 64 * 1024  # body bytes one stream queues (as several frames) per write


class ConnectionLost(Exception):
    """A write to the visitor failed or timed out; the connection is finished."""


class Http2Writer:
    """Writes what h2 queued; waits for flow-control credit; gives credit back."""

    def __init__(
        self, stream: trio.abc.Stream, h2_conn: h2.connection.H2Connection, limits: Http2Limits, abort: Callable[[], None]
    ) -> None:
        self.stream = stream
        self.h2 = h2_conn
        self.limits = limits
        self.lost = False
        self.data_sent = 0  # response body bytes queued, for the WINDOW_UPDATE budget
        self._abort_connection = abort  # called when a write fails: it calls `abort` too
        self._lock = trio.Lock()
        self._write_scope: trio.CancelScope | None = None
        self._send_nowait = getattr(stream, "send_nowait", None)  # TLSSocketStream's: what the socket takes now
        self._injected = bytearray()  # frames h2 cannot send while staying open: the graceful GOAWAY
        self._window_opened = trio.Event()

    def inject(self, frame: bytes) -> None:
        """Queue a serialized frame ahead of h2's."""
        self._injected += frame

    def window_opened(self) -> None:
        """The client gave credit (WINDOW_UPDATE or SETTINGS): senders waiting for it retry."""
        self._window_opened.set()
        self._window_opened = trio.Event()

    async def send(self, action: Callable[[], None]) -> None:
        """Queue one h2 call's frames, then write everything queued (other streams' too)."""
        action()
        await self.flush()

    async def send_data(self, stream_id: int, data: bytes, end_stream: bool = False, flush: bool = True) -> int:
        """Send as much of `data` as the windows allow, waiting for credit; returns the count sent.

        With `end_stream`, the frame carrying the last byte of `data` ends the stream;
        without `flush`, the frames are only queued (unless it must wait for credit).
        Each stream queues at most SEND_BATCH bytes before waiting for the write, so
        the unsent backlog stays under max_concurrent_streams × SEND_BATCH.
        """
        while True:
            size = min(len(data), self.h2.local_flow_control_window(stream_id), SEND_BATCH)
            if size > 0:
                frame = self.h2.max_outbound_frame_size
                for offset in range(0, size, frame):
                    last = offset + frame >= size
                    self.h2.send_data(
                        stream_id, data[offset : min(offset + frame, size)], end_stream=end_stream and last and size == len(data)
                    )
                self.data_sent += size
                if flush:
                    await self.flush()
                return size
            opened = self._window_opened
            if not flush:
                await self.flush()  # what the caller queued: the client makes room only for what it got
            with trio.fail_after(self.limits.send_timeout):
                await opened.wait()

    async def acknowledge(self, stream_id: int, size: int) -> None:
        """Give the client credit for `size` flow-controlled bytes that were passed on."""
        if size:
            self.h2.acknowledge_received_data(size, stream_id)
            await self.flush_soon()

    async def flush(self) -> None:
        async with self._lock:
            await self._drain()

    async def flush_soon(self) -> bool:
        """Flush, unless a writer holds the lock: it writes what we queued before releasing
        it. Returns whether it flushed."""
        if self._lock.locked():
            return False
        await self.flush()
        return True

    async def _drain(self) -> None:
        """Write everything queued; the caller holds the send lock.

        What the socket takes at once goes without a timer (`send_nowait`, on TLS); the rest
        is written shielded from stream cancellation (half a frame would break the
        connection for every stream), and only the send timeout or `abort` stops it.
        """
        if self.lost:
            raise ConnectionLost("connection closed")
        while data := self._take():
            scope = None
            try:
                if self._send_nowait is not None and (sent := self._send_nowait(data)):
                    if sent == len(data):
                        continue
                    data = memoryview(data)[sent:]
                scope = self._write_scope = trio.CancelScope(shield=True, relative_deadline=self.limits.send_timeout)
                with scope:
                    await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._abort_connection()
                raise ConnectionLost(f"write failed: {exc!r}") from exc
            finally:
                self._write_scope = None
            if scope.cancelled_caught:
                if self.lost:
                    raise ConnectionLost("connection aborted during a write")
                self._abort_connection()
                raise ConnectionLost(f"write failed: {trio.TooSlowError()!r}")

    def queued(self) -> bool:
        """Whether anything waits to be written (h2's frames are moved behind the injected ones)."""
        self._injected += self.h2.data_to_send()
        return bool(self._injected)

    def _take(self) -> bytes:
        data = bytes(self._injected) + self.h2.data_to_send()
        self._injected.clear()
        return data

    def abort(self) -> None:
        """Write nothing more; stop the write in progress."""
        self.lost = True
        if self._write_scope is not None:
            self._write_scope.cancel()
