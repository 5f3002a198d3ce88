"""Trio shell around `shared.protocol.TunnelSession`: `TunnelConnection`, whose streams are
`shared.tunnel_stream.TunnelStream`s.

One reader task feeds the session; one writer task sends whatever the session
has queued, so writes coalesce and a cancelled request can never leave the TLS
stream half-written. Each stream has its own inbound queue, bounded by HTTP/2
flow control because credit is returned only after the consumer took the
bytes. A session that fails once is finished: the first error is raised to
every waiter.

Hot paths avoid the scheduler: a call that finds what it needs returns without
yielding, and the writer is woken only when there are bytes to send, then lets
the other tasks of that scheduling round add theirs, so they share one write.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from shared import protocol, session_events
from shared.aio import Signal, TaskPool, single_errors
from shared.errors import ProtocolError
from shared.events import RequestHead
from shared.tunnel_stream import CLEANUP_TIMEOUT, StreamRefused, StreamResetError, TunnelStream

log = logging.getLogger(__name__)

# The most one read takes: a TLS stream (shared.tls_socket) reads the records already received up to this,
# so a bulk transfer costs one scheduling step per 256 KiB rather than per 16 KiB record.
READ_SIZE = 256 * 1024
WRITE_HIGH_WATER = 1024 * 1024  # queued body bytes before senders wait for the writer
PING_INTERVAL = 10.0
PING_TIMEOUT = 15.0


StreamHandler = Callable[[TunnelStream], Awaitable[None]]


class TunnelConnection:
    """A registered tunnel connection: the multiplexed session over one TLS stream."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        session: protocol.TunnelSession,
        *,
        initial_data: bytes = b"",
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
    ) -> None:
        self.transport = transport
        self.session = session
        self._initial_data = initial_data
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._streams: dict[int, TunnelStream] = {}
        self._outbox: list[bytes | memoryview] = []  # frames taken from the session, not yet sent
        self._outbox_filled = Signal()
        self._written = Signal()
        self._queued = 0
        self._batches_taken = 0  # how many times the writer took bytes from the outbox
        self._writing = False
        self._error: BaseException | None = None
        self._pong = trio.Event()
        self._idle = Signal()
        self._drain_acked = trio.Event()
        self.draining = False
        self.peer_draining = False
        self._handler: StreamHandler | None = None
        self._handlers: TaskPool | None = None  # runs `_handler` on each stream the peer opens
        self._dispatch: dict[type, Callable[[Any], None]] = {
            session_events.StreamOpened: self._on_stream_opened,
            session_events.ResponseStarted: self._on_response,
            session_events.DataReceived: self._on_data,
            session_events.TrailersReceived: self._on_trailers,
            session_events.StreamEnded: self._on_stream_ended,
            session_events.StreamReset: self._on_stream_reset,
            session_events.WindowOpened: self._on_window,
            session_events.PingAcked: self._on_ping_ack,
            session_events.DrainRequested: self._on_drain_requested,
            session_events.GoAway: self._on_goaway,
        }

    @property
    def active_streams(self) -> int:
        return len(self._streams)

    @property
    def accepting(self) -> bool:
        """True while new streams may be opened on this connection."""
        return (
            self._error is None
            and not self.draining
            and not self.peer_draining
            and len(self._streams) < self.session.max_streams
        )

    async def serve(self, handler: StreamHandler | None = None) -> None:
        """Run the session until it closes; `handler` serves peer-opened streams.

        Returns after a graceful close; raises the error that ended the session.
        """
        self._handler = handler
        try:
            with single_errors():
                async with trio.open_nursery() as nursery:
                    self._handlers = TaskPool(nursery, self._run_handler)
                    nursery.start_soon(self._keepalive)
                    nursery.start_soon(self._writer)
                    await self._read_loop()
                    nursery.cancel_scope.cancel()
        except BaseException as exc:
            self._fail(exc if isinstance(exc, Exception) else ProtocolError("tunnel session cancelled"))
            raise
        finally:
            self._fail(ProtocolError("tunnel session closed"))  # after a graceful end too: open no more streams
            self._drain_acked.set()  # a drain waiting on this session need not wait any longer
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.transport)

    async def open_stream(self, head: RequestHead, kind: bytes = protocol.KIND_HTTP) -> TunnelStream:
        """(edge) Open a stream carrying `head` (none for a caller already cancelled: a
        visitor's reset must not reach the connector)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._error is not None:
            raise StreamRefused(f"tunnel session ended: {self._error}")
        try:
            stream_id = self.session.open_stream(head, kind)
        except ProtocolError as exc:  # nothing was queued
            raise StreamRefused(str(exc)) from exc
        stream = TunnelStream(self, stream_id, head, kind)
        stream.local_closed = not head.has_body and kind in protocol.ANSWERED_KINDS
        self._streams[stream_id] = stream
        await self._flush()
        return stream

    async def drain(self, grace: float) -> None:
        """Announce a drain, wait up to `grace` seconds for open streams, then close."""
        self.draining = True
        self.session.announce_drain()
        await self._flush()
        with trio.move_on_after(grace):
            # Streams the peer opened before it saw the drain arrive ahead of the PING ACK
            # (one TCP stream, in order): once it is here, `_streams` holds all of them.
            await self._drain_acked.wait()
            while self._streams:
                await self._idle.wait()
        self.session.goaway()
        with trio.move_on_after(CLEANUP_TIMEOUT):
            if self._error is None:  # else the session ended meanwhile (the peer closed first): nothing to send
                await self._flush()
                while (self._writing or self._outbox) and self._error is None:
                    await self._written.wait()
        await trio.aclose_forcefully(self.transport)

    # Reader ---------------------------------------------------------------------

    async def _read_loop(self) -> None:
        data: bytes | bytearray = self._initial_data
        dispatch = self._dispatch
        while True:
            if data:
                for event in self.session.receive_data(data):
                    dispatch[type(event)](event)
                self._take_output()
            if self.peer_draining and not self._streams:
                return
            try:
                data = await self.transport.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                if self.draining:
                    return
                raise ProtocolError(f"tunnel connection lost: {exc or 'closed'}") from exc
            if not data:
                if self.draining or (self.peer_draining and not self._streams):
                    return
                raise ProtocolError("tunnel connection closed by the peer")

    def _on_stream_opened(self, event: session_events.StreamOpened) -> None:
        if self._handler is None or self._handlers is None or (self.draining and self._drain_acked.is_set()):
            # no handler, or opened after the peer acknowledged our drain: refused, never processed
            self.session.reset_stream(event.stream_id, protocol.REFUSED_STREAM)
            return
        stream = TunnelStream(self, event.stream_id, event.head, event.kind)
        stream.remote_closed = not event.head.has_body and event.kind in protocol.ANSWERED_KINDS
        self._streams[event.stream_id] = stream
        self._handlers.submit(stream)

    async def _run_handler(self, stream: TunnelStream) -> None:
        handler = self._handler
        try:
            if handler is not None:  # (streams are only handed over while there is one)
                await handler(stream)
        except ProtocolError as exc:
            log.debug("stream.failed stream=%d error=%s", stream.stream_id, exc)
        except Exception:
            log.exception("stream.handler_crashed stream=%d", stream.stream_id)
        finally:
            await stream.aclose()

    def _on_response(self, event: session_events.ResponseStarted) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        stream._response = event.head
        stream._readable.fire()

    def _on_data(self, event: session_events.DataReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            self.session.acknowledge(event.stream_id, event.flow_length)
            return
        stream._inbound.append((event.data, event.flow_length))
        stream._readable.fire()

    def _on_trailers(self, event: session_events.TrailersReceived) -> None:
        if (stream := self._streams.get(event.stream_id)) is not None:
            stream.trailers = event.headers

    def _on_stream_ended(self, event: session_events.StreamEnded) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        stream.remote_closed = True
        stream._readable.fire()
        self._forget_if_done(stream)

    def _on_stream_reset(self, event: session_events.StreamReset) -> None:
        stream = self._streams.pop(event.stream_id, None)
        if stream is None:
            return
        error = StreamRefused if event.error_code == protocol.REFUSED_STREAM else StreamResetError
        stream._fail(error(f"stream reset by the peer (code {event.error_code})"))
        self._set_idle_if_empty()

    def _on_window(self, event: session_events.WindowOpened) -> None:
        if event.stream_id == 0:
            for each in self._streams.values():
                each._writable.fire()
        elif (stream := self._streams.get(event.stream_id)) is not None:
            stream._writable.fire()

    def _on_ping_ack(self, event: session_events.PingAcked) -> None:
        if event.payload == protocol.DRAIN_PING:
            self._drain_acked.set()
        self._pong.set()

    def _on_drain_requested(self, event: session_events.DrainRequested) -> None:
        self.peer_draining = True

    def _on_goaway(self, event: session_events.GoAway) -> None:
        self.peer_draining = True
        if self.session.role == "edge":  # the streams we opened that the peer never took
            for stream_id in [sid for sid in self._streams if sid > event.last_stream_id]:
                self._streams.pop(stream_id)._fail(StreamRefused("stream beyond the peer's GOAWAY"))
        if event.error_code != protocol.NO_ERROR:
            raise ProtocolError(f"tunnel peer closed the session (code {event.error_code})")
        self._fail(ProtocolError("tunnel peer closed the session"))

    # Helpers ---------------------------------------------------------------------

    def _forget_if_done(self, stream: TunnelStream) -> None:
        if stream.local_closed and stream.remote_closed:
            self._streams.pop(stream.stream_id, None)
            self._set_idle_if_empty()

    def _set_idle_if_empty(self) -> None:
        if not self._streams:
            self._idle.fire()

    def _take_output(self) -> None:
        """Move what the session queued to the outbox, waking the writer if there was any."""
        if self._error is None and (frames := self.session.take_output()):
            self._outbox += frames
            self._outbox_filled.fire()

    async def _flush(self, queued: int = 0) -> None:
        """Have the writer send what the session queued; wait if too much is pending."""
        if self._error is not None:
            raise self._error
        self._queued += queued
        self._take_output()
        while self._queued > WRITE_HIGH_WATER and self._error is None:
            await self._written.wait()

    async def _writer(self) -> None:
        outbox = self._outbox
        while True:
            if not outbox:
                await self._outbox_filled.wait()
                await trio.lowlevel.checkpoint()  # senders woken with the one that woke us add theirs: one write
                continue
            data = b"".join(outbox)  # every frame queued since the last write, copied once
            outbox.clear()
            self._batches_taken += 1
            self._queued = 0
            self._writing = True
            try:
                await self.transport.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ProtocolError(f"tunnel connection lost: {exc or 'closed'}") from exc
            self._writing = False
            self._written.fire()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._written.fire()
        for stream in self._streams.values():
            unsent = stream.sent_from_batch == self._batches_taken and self.session.role == "edge"
            stream._fail(StreamRefused(f"never sent: {self._error}") if unsent else self._error)
        self._streams.clear()
        self._idle.fire()

    async def _keepalive(self) -> None:
        counter = 0
        while True:
            await trio.sleep(self._ping_interval)
            if self.session.closed:  # GOAWAY: the session is ending, the reader sees it out
                return
            counter += 1
            self._pong = trio.Event()
            self.session.ping(struct.pack("!Q", counter))
            await self._flush()
            with trio.move_on_after(self._ping_timeout) as scope:
                await self._pong.wait()
            if scope.cancelled_caught:
                raise ProtocolError(f"tunnel peer did not answer PING within {self._ping_timeout:g}s")
