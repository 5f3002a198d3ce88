"""HTTP/2 for visitors (h2): frames ⇄ `Exchange`, one task per stream at a time.

One reader loop feeds h2; tasks queue frames in h2 and every write goes
through `_drain` under one lock, so frames queued meanwhile share a write;
each request stream is served by a task in the connection's nursery calling
the same handler as HTTP/1.1 (`Proxy.handle`); a task that finished its stream
waits for the next one (`shared.aio.TaskPool`) rather than exiting. Request-body credit goes back
to the client only once the handler asks for the next chunk, i.e. after it
passed the previous one on. A stream error resets that stream only; a
connection error sends GOAWAY and closes.

WebSocket over HTTP/2 (RFC 8441): the edge announces SETTINGS_ENABLE_CONNECT_PROTOCOL;
a `CONNECT` with `:protocol websocket` becomes the HTTP/1.1 Upgrade request the
tunnel and origin already speak, the origin's 101 becomes a 200 on the stream,
and the stream's DATA frames carry the WebSocket bytes both ways.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from edge.dns.zone import normalize_host
from edge.visitors.http2_fields import MalformedRequest, StrictDecoder, request_head, trailer_fields
from edge.visitors.http2_guards import Flood, FrameMeter, Http2Limits, LeakyBucket, ResetRateGuard
from edge.visitors.http2_send import ConnectionLost, Http2Writer
from edge.visitors.http2_stream import Http2Exchange
from shared.aio import Signal, TaskPool
from shared.errors import BurrowError
from shared.pages import error_page

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 65_535  # RFC 9113 §6.9.2: every window before SETTINGS or WINDOW_UPDATE
CLEANUP_TIMEOUT = 1.0
PARKED_STREAM_TASKS = 10  # finished stream tasks a connection keeps for its next streams (a browser's ~6-10 at once)
LINGER_BYTES = 16 * 1024 * 1024  # read and dropped after an error GOAWAY, at most (socket buffers hold MBs)


class _Stop(Exception):
    """Ends the connection; `error_code` goes in a GOAWAY unless None (nobody to tell)."""

    def __init__(self, reason: str, error_code: ErrorCodes | None) -> None:
        super().__init__(reason)
        self.error_code = error_code


Handler = Callable[[Http2Exchange], Awaitable[None]]

# A stream ends with one of these when its visitor, tunnel or timer gives up; only it is reset.
STREAM_ERRORS = (
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    BurrowError,
    ConnectionLost,
    h2.exceptions.ProtocolError,  # the stream (or, a moment before teardown, the connection) closed
)


class Http2Connection:
    """The HTTP/2 server side of one visitor connection."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        client: tuple[str, int],
        server: tuple[str, int],
        limits: Http2Limits = Http2Limits(),
        scheme: bytes = b"https",
        sni: str | None = None,
    ) -> None:
        self.stream = stream
        self.client = client
        self.server = server
        self.limits = limits
        self.scheme = scheme
        self.sni = sni  # the TLS server name the visitor asked for; each :authority must match it
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.h2.decoder = StrictDecoder()
        self._handle: Handler | None = None
        self._nursery: trio.Nursery | None = None
        self._streams: dict[int, Http2Exchange] = {}
        self.writer = Http2Writer(stream, self.h2, limits, self._abort)
        self._settled = False  # the client's first SETTINGS arrived
        self._requests = 0
        self._last_stream: int | None = None  # set by our graceful GOAWAY
        self._deadline = math.inf
        self._read_scope = trio.CancelScope()
        self._resets = ResetRateGuard(limits.rapid_reset_streams, limits.rapid_reset_window)
        self._frames = FrameMeter(limits)
        self._waiting: dict[int, tuple[Http2Exchange, Handler]] = {}  # streams not yet started, in order
        self._starts = LeakyBucket(self.limits.max_stream_starts, 1.0)  # streams started and not answered
        self._has_waiting = Signal()
        self._stream_tasks: TaskPool | None = None  # runs `_serve_stream`; its tasks serve one stream after another
        self._dispatch: dict[type, Callable] = {
            h2.events.RequestReceived: self._on_request,
            h2.events.DataReceived: self._on_data,
            h2.events.TrailersReceived: self._on_trailers,
            h2.events.StreamEnded: self._on_stream_ended,
            h2.events.StreamReset: self._on_stream_reset,
            h2.events.WindowUpdated: self._on_window,
            h2.events.RemoteSettingsChanged: self._on_settings,
            h2.events.ConnectionTerminated: self._on_goaway,
        }

    async def serve(self, handle: Handler) -> None:
        """Serve streams until the visitor leaves, idles out, or the connection fails."""
        self._handle = handle
        self._deadline = trio.current_time() + self.limits.preface_timeout
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._stream_tasks = TaskPool(nursery, self._serve_stream, max_idle=PARKED_STREAM_TASKS)
            nursery.start_soon(self._start_streams)
            stop = await self._run()
            self._waiting.clear()
            nursery.cancel_scope.cancel()  # every stream ends now (the closing frames go out shielded)
            await self._close(stop)
            self._abort()

    async def _run(self) -> _Stop:
        """Read until the end; returns the GOAWAY to send (its code None: queued already, or pointless)."""
        try:
            self._start()
            await self.writer.flush()
            await self._read_loop()
        except _Stop as exc:
            level = logging.DEBUG if exc.error_code in (None, ErrorCodes.NO_ERROR) else logging.WARNING
            log.log(level, "http2.closed client=%s reason=%s", self.client[0], exc)
            return exc
        except h2.exceptions.ProtocolError as exc:  # h2 queued a GOAWAY naming the error
            log.debug("http2.protocol_error client=%s error=%s", self.client[0], exc)
            return _Stop(str(exc), None)
        except (ConnectionLost, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("http2.lost client=%s error=%r", self.client[0], exc)
            return _Stop(repr(exc), None)
        return _Stop("", ErrorCodes.NO_ERROR)

    def _start(self) -> None:
        limits = self.limits
        self.h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
                SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
                SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,  # RFC 8441: WebSocket over HTTP/2
            },
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(limits.connection_window_size - DEFAULT_WINDOW)
        # Decode up to the hard cap so that a list between the advertised size and the
        # cap gets a 431 on its stream; beyond it h2 refuses the connection (HPACK bomb).
        self.h2.decoder.max_header_list_size = limits.max_header_block

    async def _read_loop(self) -> None:
        reads_during_write = 0
        while not (self._last_stream is not None and not self._streams):
            with trio.CancelScope(deadline=min(self._deadline, self._frames.deadline)) as self._read_scope:
                data = await self.stream.receive_some(self.limits.read_size)
            if self._read_scope.cancelled_caught:
                if trio.current_time() >= self._frames.deadline:
                    raise _Stop(f"header block not complete in {self.limits.header_block_timeout:g} s", ErrorCodes.ENHANCE_YOUR_CALM)
                if not self._settled:
                    raise _Stop("no preface and SETTINGS in time", ErrorCodes.NO_ERROR)
                if self._last_stream is None and not self._streams:
                    log.debug("http2.idle client=%s", self.client[0])
                    return
                continue  # the last stream of a draining connection ended
            if not data:
                return
            try:
                pieces = self._frames.feed(data, trio.current_time(), self.writer.data_sent)
            except Flood as exc:
                raise _Stop(str(exc), ErrorCodes.ENHANCE_YOUR_CALM) from exc
            for piece in pieces:  # so that a defence below acts within a piece, not a read
                for event in self.h2.receive_data(piece):
                    handler = self._dispatch.get(type(event))
                    if handler is not None:
                        handler(event)
            # A write under way takes what this read queued (acks, resets), unless the client
            # stopped reading: after a few reads it is read no more until the write is done.
            if await self.writer.flush_soon():
                reads_during_write = 0
            elif (reads_during_write := reads_during_write + 1) > self.limits.max_reads_during_write:
                await self.writer.flush()
                reads_during_write = 0

    # Events from h2 ----------------------------------------------------------------

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if self._last_stream is not None and stream_id > self._last_stream:
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        try:
            head, problem = request_head(event.headers, event.stream_ended is None, self.scheme, self.limits)
        except MalformedRequest as exc:
            log.debug("http2.malformed client=%s stream=%d reason=%s", self.client[0], stream_id, exc)
            self.h2.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            return
        self._resets.opened(trio.current_time())
        self._requests += 1
        if problem is None and self.sni is not None and normalize_host(head.authority.decode("latin-1")) != self.sni:
            problem = (421, "the :authority does not match the TLS server name")  # a coalesced connection: retry on a new one
        exchange = Http2Exchange(self, stream_id, head)
        if exchange.upgrade:  # the translated head has no body; the stream stays open for DATA
            exchange.remote_closed = event.stream_ended is not None
        self._streams[stream_id] = exchange
        self._waiting[stream_id] = (exchange, functools.partial(_refuse, *problem) if problem else self._handle)
        self._has_waiting.fire()
        if self._requests >= self.limits.max_requests and self._last_stream is None:
            self._last_stream = stream_id
            self.writer.inject(GoAwayFrame(0, last_stream_id=stream_id, error_code=ErrorCodes.NO_ERROR).serialize())
            log.debug("http2.draining client=%s requests=%d", self.client[0], self._requests)
        self._update_deadline()

    def _on_data(self, event: h2.events.DataReceived) -> None:
        exchange = self._streams.get(event.stream_id)
        if exchange is None or not event.data:  # nobody reads it: credit it back at once
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        else:
            exchange.deliver(bytes(event.data), event.flow_controlled_length)

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        # h2 reports StreamEnded next, which ends the body the handler reads.
        if exchange := self._streams.get(event.stream_id):
            exchange.request_trailers = trailer_fields(event.headers)

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        if exchange := self._streams.get(event.stream_id):
            exchange.ended()

    def _on_stream_reset(self, event: h2.events.StreamReset) -> None:
        exchange = self._streams.get(event.stream_id)
        if exchange is None:
            return
        # Only resets of streams still being answered count: those cost us work.
        if not exchange.local_closed and self._resets.reset(trio.current_time()):
            raise _Stop("rapid reset", ErrorCodes.ENHANCE_YOUR_CALM)
        exchange.reset_by_peer()
        if self._waiting.pop(event.stream_id, None):  # never started: no task, no tunnel stream
            self._forget(exchange)

    def _on_window(self, event: h2.events.WindowUpdated) -> None:
        self.writer.window_opened()

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        if not self._settled:
            self._settled = True
            self._update_deadline()
        self.writer.window_opened()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        # Once h2 has a GOAWAY it refuses to send anything more, so nothing in flight can finish.
        raise _Stop(f"visitor sent GOAWAY {event.error_code!r}", None)

    def _update_deadline(self) -> None:
        if self._streams:
            deadline = math.inf
        elif not self._settled:
            return  # the preface deadline stands
        elif self._last_stream is not None:
            deadline = -math.inf  # drained: stop reading now
        else:
            deadline = trio.current_time() + self.limits.idle_timeout
        self._deadline = deadline
        if (read_deadline := min(deadline, self._frames.deadline)) != self._read_scope.deadline:
            self._read_scope.deadline = read_deadline  # (trio's setter is costly: only a change)

    # Streams ----------------------------------------------------------------------

    async def _start_streams(self) -> None:
        """Start each waiting stream's task, at most `max_stream_starts` a second not counting
        the streams answered in full (`_forget` gives their start back), so a busy client is not
        slowed and streams abandoned unanswered (rapid reset) are paced. A stream waits at least
        until the reader handled the rest of its read: one reset in the same read never starts."""
        while True:
            if not self._waiting:
                await self._has_waiting.wait()
            elif delay := self._starts.wait(trio.current_time()):
                await trio.sleep(delay)
            else:
                self._starts.add(trio.current_time())
                exchange, respond = self._waiting.pop(next(iter(self._waiting)))
                self._stream_tasks.submit((exchange, respond))

    async def _serve_stream(self, started: tuple[Http2Exchange, Handler]) -> None:
        exchange, respond = started
        try:
            with exchange.scope:
                await respond(exchange)
        except STREAM_ERRORS as exc:
            log.debug("http2.stream_aborted client=%s stream=%d error=%r", self.client[0], exchange.stream_id, exc)
        except Exception:
            log.exception("http2.stream_failed client=%s stream=%d", self.client[0], exchange.stream_id)
        finally:
            self._forget(exchange)
            if not self.writer.lost and self.writer.queued():  # (`_forget` may queue a reset or credit)
                with trio.CancelScope(shield=True, relative_deadline=CLEANUP_TIMEOUT):
                    try:
                        await self.writer.flush_soon()
                    except ConnectionLost:
                        pass

    def _forget(self, exchange: Http2Exchange) -> None:
        """The stream is done with: return its unread credit, reset it if it is still open."""
        stream_id = exchange.stream_id
        del self._streams[stream_id]
        self._update_deadline()
        if exchange.local_closed and not exchange.peer_reset:
            self._starts.credit(1)  # answered in full: work the client asked for, done
        if credit := exchange.unreturned_credit():
            self.h2.acknowledge_received_data(credit, stream_id)
        if not exchange.peer_reset and not (exchange.local_closed and exchange.remote_closed):
            # A complete response with the request body unread ends with NO_ERROR (RFC 9113 §8.1).
            code = ErrorCodes.NO_ERROR if exchange.local_closed else ErrorCodes.CANCEL
            try:
                self.h2.reset_stream(stream_id, code)
            except h2.exceptions.ProtocolError:
                pass  # h2 already closed it, or the whole connection

    async def _close(self, stop: _Stop) -> None:
        """Send the final GOAWAY (if any; its debug data names the reason) and whatever is
        queued, briefly. After an error, read and drop what the client still sends until
        it closes or CLEANUP_TIMEOUT passes: closing with unread data would reset the
        connection, and the client could lose the GOAWAY."""
        if self.writer.lost:
            return
        with trio.CancelScope(shield=True, relative_deadline=CLEANUP_TIMEOUT):
            if stop.error_code is not None:
                self.h2.close_connection(stop.error_code, str(stop).encode(), last_stream_id=self._last_stream)
            try:
                await self.writer.flush()
                lingered = 0
                while stop.error_code not in (None, ErrorCodes.NO_ERROR) and lingered < LINGER_BYTES:
                    if not (data := await self.stream.receive_some(self.limits.read_size)):
                        break
                    lingered += len(data)
            except (ConnectionLost, trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def drain(self) -> None:
        """The edge is shutting down: GOAWAY naming the last stream taken; those finish, then it closes."""
        if self._last_stream is not None or self.writer.lost or self._nursery is None:
            return
        self._last_stream = self.h2.highest_inbound_stream_id
        self.writer.inject(GoAwayFrame(0, last_stream_id=self._last_stream, error_code=ErrorCodes.NO_ERROR).serialize())
        self._update_deadline()
        self._nursery.start_soon(self._flush_quietly)

    async def _flush_quietly(self) -> None:
        try:
            await self.writer.flush()
        except (ConnectionLost, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass

    def _abort(self) -> None:
        """Stop everything: writes (the one in progress too) and every stream task."""
        self.writer.abort()
        self._nursery.cancel_scope.cancel()


async def _refuse(status: int, reason: str, exchange: Http2Exchange) -> None:
    head, body = error_page(status, "edge", reason)
    await exchange.send_response(head)
    await exchange.send_body(body)
    await exchange.end()

