"""HTTP/2 for visitors (h2): frames ⇄ `Exchange`, one task per stream.

One reader loop feeds h2; tasks queue frames in h2 and every write goes
through `_drain` under one lock, so frames queued meanwhile share a write;
each request stream is served by a task in the connection's nursery calling
the same handler as HTTP/1.1 (`Proxy.handle`). Request-body credit goes back
to the client only once the handler asks for the next chunk, i.e. after it
passed the previous one on. A stream error resets that stream only; a
connection error sends GOAWAY and closes.

WebSocket over HTTP/2 (RFC 8441): the edge announces SETTINGS_ENABLE_CONNECT_PROTOCOL;
a `CONNECT` with `:protocol websocket` becomes the HTTP/1.1 Upgrade request the
tunnel and origin already speak, the origin's 101 becomes a 200 on the stream,
and the stream's DATA frames carry the WebSocket bytes both ways.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from edge.visitors.http2_guards import HeaderBlockMeter, HeaderBlockTooLarge, ResetRateGuard
from edge.dns.zone import normalize_host
from shared.aio import receive_records
from shared.errors import BurrowError, ProtocolError
from shared.events import Headers, RequestHead, ResponseHead
from shared.pages import error_page

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 65_535  # RFC 9113 §6.9.2: every window before SETTINGS or WINDOW_UPDATE
CLEANUP_TIMEOUT = 1.0
SEND_BATCH = 64 * 1024  # body bytes one stream queues (as several frames) per write
# RFC 9113 §8.2.2: connection-specific fields have no place in HTTP/2 ("te" only as "trailers").
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
NO_BODY_STATUSES = frozenset({204, 304})
WEBSOCKET = b"websocket"
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
_END = None  # marks the end of a request body in an exchange's queue


@dataclass(frozen=True)
class Http2Limits:
    """SETTINGS, defences and timers for visitor connections (DESIGN.md §6; seconds and bytes)."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 64 * 1024
    connection_window_size: int = 1024 * 1024
    max_frame_size: int = 16 * 1024
    max_header_list_size: int = 64 * 1024  # advertised; a larger request gets 431
    max_header_fields: int = 100  # more get 431
    max_header_block: int = 128 * 1024  # encoded or decoded, beyond this: GOAWAY ENHANCE_YOUR_CALM
    max_requests: int = 10_000  # per connection, then a graceful GOAWAY
    max_queued_control_frames: int = 1000  # PING/SETTINGS acks the peer has not read
    rapid_reset_streams: int = 100  # streams opened within the window before resets count
    rapid_reset_window: float = 1.0
    preface_timeout: float = 10.0  # preface and first SETTINGS
    idle_timeout: float = 75.0  # no open stream
    body_idle_timeout: float = 60.0
    send_timeout: float = 60.0
    read_size: int = 64 * 1024


class _Stop(Exception):
    """Ends the connection; `error_code` goes in a GOAWAY unless None (nobody to tell)."""

    def __init__(self, reason: str, error_code: ErrorCodes | None) -> None:
        super().__init__(reason)
        self.error_code = error_code


class ConnectionLost(Exception):
    """A write to the visitor failed or timed out; the connection is finished."""


class Http2Exchange:
    """One request stream on an HTTP/2 connection."""

    def __init__(self, connection: Http2Connection, stream_id: int, head: RequestHead) -> None:
        self._conn = connection
        self.stream_id = stream_id
        self.head = head
        self.client = connection.client
        self.server = connection.server
        self.response_started = False
        self.scope = trio.CancelScope()  # cancelled when the visitor resets the stream
        # Unbounded, but flow control bounds it: the client may send one stream window ahead.
        self._body_in, self._body = trio.open_memory_channel(math.inf)
        self._credit = 0  # flow-controlled bytes handed out and not yet returned to the client
        self._body_allowed = head.method != b"HEAD"
        self._unsent: int | None = None  # body bytes the response's content-length still promises
        self.local_closed = False
        self.remote_closed = not head.has_body
        self.peer_reset = False
        self.request_trailers: Headers = ()  # set when the request body ended with trailers
        # h2 refuses `upgrade` fields in HTTP/2 requests (RFC 9113 §8.2.2): only an
        # extended CONNECT, translated by `request_head`, carries one.
        self.upgrade = WEBSOCKET if head.header(b"upgrade") == WEBSOCKET else None
        self._held = False  # frames are queued, not written, until the response ends (`hold()`)
        self._held_size = 0  # body bytes queued meanwhile

    def hold(self) -> None:
        """Queue the response's frames until it ends, then write them at once (for a caller
        that has all of it at hand: no wait between its pieces)."""
        self._held = True

    async def _send(self, action: Callable[[], None]) -> None:
        if self._held:
            action()
        else:
            await self._conn.send(action)

    async def release(self) -> None:
        """Write what `hold()` kept back, and hold no more."""
        if self._held:
            self._held = False
            await self._conn._flush()

    async def receive_body(self) -> bytes:
        return await self._receive(self._conn.limits.body_idle_timeout)

    async def _receive(self, idle_timeout: float) -> bytes:
        await self._conn.acknowledge(self.stream_id, self._credit)
        self._credit = 0
        if self.remote_closed and self._body.statistics().current_buffer_used == 0:
            return b""
        with trio.fail_after(idle_timeout):
            item = await self._body.receive()
        if item is _END:
            return b""
        # Hand over everything already buffered (at most one stream window) in one chunk.
        chunks, self._credit = [item[0]], item[1]
        while True:
            try:
                item = self._body.receive_nowait()
            except trio.WouldBlock:
                break
            if item is _END:
                break  # remote_closed is set: the next call returns b""
            chunks.append(item[0])
            self._credit += item[1]
        return b"".join(chunks)

    async def send_response(self, head: ResponseHead) -> None:
        self._body_allowed = self._body_allowed and head.has_body and head.status not in NO_BODY_STATUSES
        headers = [(b":status", str(head.status).encode()), *response_headers(head.headers)]
        length = head.header(b"content-length")
        self._unsent = int(length) if length and length.isdigit() else None
        await self._send(
            functools.partial(self._conn.h2.send_headers, self.stream_id, headers, end_stream=not self._body_allowed)
        )
        self.response_started = True
        self.local_closed = not self._body_allowed

    async def send_body(self, data: bytes) -> None:
        if not self._body_allowed or self.local_closed:
            return
        if self._held:
            self._held_size += len(data)
            if self._held_size > SEND_BATCH:  # a large body is written as it comes
                await self.release()
        # The chunk completing a content-length carries END_STREAM: a client that stops
        # at the length (curl does) has nothing to reset, and a frame is saved.
        last = self._unsent is not None and len(data) >= self._unsent
        offset = 0
        while offset < len(data):
            offset += await self._conn.send_data(self.stream_id, data[offset:], end_stream=last, flush=not self._held)
        if self._unsent is not None:
            self._unsent -= len(data)
        if last:
            self.local_closed = True

    async def end(self) -> None:
        if not self.local_closed:
            await self._send(functools.partial(self._conn.h2.end_stream, self.stream_id))
            self.local_closed = True
        await self.release()

    async def send_trailers(self, headers: Headers) -> None:
        """End the response with trailing fields (gRPC's grpc-status); without any, just end."""
        fields = trailer_fields(headers)
        if not fields or not self._body_allowed or self.local_closed:
            await self.end()
            return
        await self._send(functools.partial(self._conn.h2.send_headers, self.stream_id, fields, end_stream=True))
        self.local_closed = True
        await self.release()

    async def switch_protocols(self, head: ResponseHead) -> tuple[trio.abc.Stream, bytes]:
        """RFC 8441: answer the origin's 101 with 200; return this stream as a byte stream."""
        if head.header(b"sec-websocket-accept") != websocket_accept(self.head.header(b"sec-websocket-key") or b""):
            raise ProtocolError("the origin's Sec-WebSocket-Accept does not match the key")
        headers = tuple((name, value) for name, value in head.headers if name != b"sec-websocket-accept")
        await self.send_response(ResponseHead(200, headers))
        log.info("http2.websocket client=%s host=%s", self.client[0], self.head.authority.decode("latin-1"))
        return Http2ByteStream(self), b""

    # Called by the connection ---------------------------------------------------

    def deliver(self, data: bytes, flow_length: int) -> None:
        self._body_in.send_nowait((data, flow_length))

    def ended(self) -> None:
        self.remote_closed = True
        self._body_in.send_nowait(_END)

    def reset_by_peer(self) -> None:
        self.peer_reset = self.remote_closed = True
        self.scope.cancel()

    def unreturned_credit(self) -> int:
        """Credit for body bytes the handler took or never read; the connection returns it at the end."""
        credit, self._credit = self._credit, 0
        while True:
            try:
                item = self._body.receive_nowait()
            except trio.WouldBlock:
                return credit
            if item is not _END:
                credit += item[1]


class Http2ByteStream(trio.abc.HalfCloseableStream):
    """An extended-CONNECT stream's DATA frames as a trio stream, for `relay`.

    No idle timeout of its own (the relay has one); `aclose` leaves the stream to
    its task, which resets it if either side is still open.
    """

    def __init__(self, exchange: Http2Exchange) -> None:
        self._exchange = exchange
        self._pending = b""  # received, beyond what the last caller asked for

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._pending:
            self._pending = await self._exchange._receive(math.inf)
        size = len(self._pending) if max_bytes is None else max_bytes
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._exchange.send_body(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def send_eof(self) -> None:
        await self._exchange.end()

    async def aclose(self) -> None:
        pass


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
        self._handle: Handler | None = None
        self._nursery: trio.Nursery | None = None
        self._streams: dict[int, Http2Exchange] = {}
        self._send_lock = trio.Lock()
        self._write_scope: trio.CancelScope | None = None
        self._injected = bytearray()  # frames h2 cannot send while staying open: the graceful GOAWAY
        self._window_opened = trio.Event()
        self._queued_control = 0
        self._lost = False
        self._settled = False  # the client's first SETTINGS arrived
        self._requests = 0
        self._last_stream: int | None = None  # set by our graceful GOAWAY
        self._deadline = math.inf
        self._read_scope = trio.CancelScope()
        self._resets = ResetRateGuard(limits.rapid_reset_streams, limits.rapid_reset_window)
        self._meter = HeaderBlockMeter(limits.max_header_block)
        self._dispatch: dict[type, Callable] = {
            h2.events.RequestReceived: self._on_request,
            h2.events.DataReceived: self._on_data,
            h2.events.TrailersReceived: self._on_trailers,
            h2.events.StreamEnded: self._on_stream_ended,
            h2.events.StreamReset: self._on_stream_reset,
            h2.events.WindowUpdated: self._on_window,
            h2.events.RemoteSettingsChanged: self._on_settings,
            h2.events.PingReceived: self._on_ping,
            h2.events.ConnectionTerminated: self._on_goaway,
        }

    async def serve(self, handle: Handler) -> None:
        """Serve streams until the visitor leaves, idles out, or the connection fails."""
        self._handle = handle
        self._deadline = trio.current_time() + self.limits.preface_timeout
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            error_code = await self._run()
            await self._close(error_code)
            self._abort()

    async def _run(self) -> ErrorCodes | None:
        """Read until the end; returns the GOAWAY code to send (None: already queued or pointless)."""
        try:
            self._start()
            await self._flush()
            await self._read_loop()
        except _Stop as exc:
            level = logging.DEBUG if exc.error_code in (None, ErrorCodes.NO_ERROR) else logging.WARNING
            log.log(level, "http2.closed client=%s reason=%s", self.client[0], exc)
            return exc.error_code
        except h2.exceptions.ProtocolError as exc:  # h2 queued a GOAWAY naming the error
            log.debug("http2.protocol_error client=%s error=%s", self.client[0], exc)
            return None
        except (ConnectionLost, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("http2.lost client=%s error=%r", self.client[0], exc)
            return None
        return ErrorCodes.NO_ERROR

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
        while not (self._last_stream is not None and not self._streams):
            with trio.CancelScope(deadline=self._deadline) as self._read_scope:
                data = await receive_records(self.stream, self.limits.read_size)
            if self._read_scope.cancelled_caught:
                if not self._settled:
                    raise _Stop("no preface and SETTINGS in time", ErrorCodes.NO_ERROR)
                if self._last_stream is None and not self._streams:
                    log.debug("http2.idle client=%s", self.client[0])
                    return
                continue  # the last stream of a draining connection ended
            if not data:
                return
            try:
                self._meter.feed(data)
            except HeaderBlockTooLarge as exc:
                raise _Stop(str(exc), ErrorCodes.ENHANCE_YOUR_CALM) from exc
            for event in self.h2.receive_data(data):
                handler = self._dispatch.get(type(event))
                if handler is not None:
                    handler(event)
            if self._queued_control > self.limits.max_queued_control_frames:
                raise _Stop("control frames queued faster than read", ErrorCodes.ENHANCE_YOUR_CALM)
            await self._flush_soon()

    # Events from h2 ----------------------------------------------------------------

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if self._last_stream is not None and stream_id > self._last_stream:
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        self._resets.opened(trio.current_time())
        self._requests += 1
        head, problem = request_head(event.headers, event.stream_ended is None, self.scheme, self.limits)
        if problem is None and self.sni is not None and normalize_host(head.authority.decode("latin-1")) != self.sni:
            problem = (421, "the :authority does not match the TLS server name")  # a coalesced connection: retry on a new one
        exchange = Http2Exchange(self, stream_id, head)
        if exchange.upgrade:  # the translated head has no body; the stream stays open for DATA
            exchange.remote_closed = event.stream_ended is not None
        self._streams[stream_id] = exchange
        respond = functools.partial(_refuse, *problem) if problem else self._handle
        self._nursery.start_soon(self._serve_stream, exchange, respond)
        if self._requests >= self.limits.max_requests and self._last_stream is None:
            self._last_stream = stream_id
            self._injected += GoAwayFrame(0, last_stream_id=stream_id, error_code=ErrorCodes.NO_ERROR).serialize()
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

    def _on_window(self, event: h2.events.Event) -> None:
        self._window_opened.set()
        self._window_opened = trio.Event()

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        self._queued_control += 1  # h2 queued the ACK
        if not self._settled:
            self._settled = True
            self._update_deadline()
        self._on_window(event)

    def _on_ping(self, event: h2.events.PingReceived) -> None:
        self._queued_control += 1  # h2 queued the ACK

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
        self._deadline = self._read_scope.deadline = deadline

    # Streams ----------------------------------------------------------------------

    async def _serve_stream(self, exchange: Http2Exchange, respond: Handler) -> None:
        try:
            with exchange.scope:
                await respond(exchange)
        except STREAM_ERRORS as exc:
            log.debug("http2.stream_aborted client=%s stream=%d error=%r", self.client[0], exchange.stream_id, exc)
        except Exception:
            log.exception("http2.stream_failed client=%s stream=%d", self.client[0], exchange.stream_id)
        finally:
            del self._streams[exchange.stream_id]
            self._update_deadline()
            with trio.CancelScope(shield=True, relative_deadline=CLEANUP_TIMEOUT):
                await self._finish(exchange)

    async def _finish(self, exchange: Http2Exchange) -> None:
        """Return unread credit and reset whatever the handler left open."""
        stream_id = exchange.stream_id
        if credit := exchange.unreturned_credit():
            self.h2.acknowledge_received_data(credit, stream_id)
        if not exchange.peer_reset and not (exchange.local_closed and exchange.remote_closed):
            # A complete response with the request body unread ends with NO_ERROR (RFC 9113 §8.1).
            code = ErrorCodes.NO_ERROR if exchange.local_closed else ErrorCodes.CANCEL
            try:
                self.h2.reset_stream(stream_id, code)
            except h2.exceptions.ProtocolError:
                pass  # h2 already closed it, or the whole connection
        if not self._lost:
            try:
                await self._flush_soon()
            except ConnectionLost:
                pass

    # The send path ----------------------------------------------------------------

    async def send(self, action: Callable[[], None]) -> None:
        """Queue one h2 call's frames, then write everything queued (other streams' too)."""
        action()
        await self._flush()

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
                if flush:
                    await self._flush()
                return size
            opened = self._window_opened
            if not flush:
                await self._flush()  # what the caller queued: the client makes room only for what it got
            with trio.fail_after(self.limits.send_timeout):
                await opened.wait()

    async def acknowledge(self, stream_id: int, size: int) -> None:
        """Give the client credit for `size` flow-controlled bytes that were passed on."""
        if size:
            self.h2.acknowledge_received_data(size, stream_id)
            await self._flush_soon()

    async def _flush(self) -> None:
        async with self._send_lock:
            await self._drain()

    async def _flush_soon(self) -> None:
        """Flush, unless a writer holds the lock: it writes what we queued before releasing it."""
        if not self._send_lock.locked():
            await self._flush()

    async def _drain(self) -> None:
        """Write everything queued; the caller holds the send lock.

        Writes are shielded from stream cancellation (half a frame would break the
        connection for every stream); only the send timeout or `_abort` stops one.
        """
        if self._lost:
            raise ConnectionLost("connection closed")
        while data := self._take():
            # Shielded, so only its own deadline (the send timeout) or `_abort` cancels it.
            scope = self._write_scope = trio.CancelScope(shield=True, relative_deadline=self.limits.send_timeout)
            try:
                with scope:
                    await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._abort()
                raise ConnectionLost(f"write failed: {exc!r}") from exc
            finally:
                self._write_scope = None
            if scope.cancelled_caught:
                if self._lost:
                    raise ConnectionLost("connection aborted during a write")
                self._abort()
                raise ConnectionLost(f"write failed: {trio.TooSlowError()!r}")
        self._queued_control = 0

    def _take(self) -> bytes:
        data = bytes(self._injected) + self.h2.data_to_send()
        self._injected.clear()
        return data

    async def _close(self, error_code: ErrorCodes | None) -> None:
        """Send the final GOAWAY (if any) and whatever is queued, briefly."""
        if self._lost:
            return
        with trio.CancelScope(shield=True, relative_deadline=CLEANUP_TIMEOUT):
            if error_code is not None:
                self.h2.close_connection(error_code, last_stream_id=self._last_stream)
            try:
                await self._flush()
            except ConnectionLost:
                pass

    def drain(self) -> None:
        """The edge is shutting down: GOAWAY naming the last stream taken; those finish, then it closes."""
        if self._last_stream is not None or self._lost or self._nursery is None:
            return
        self._last_stream = self.h2.highest_inbound_stream_id
        self._injected += GoAwayFrame(0, last_stream_id=self._last_stream, error_code=ErrorCodes.NO_ERROR).serialize()
        self._update_deadline()
        self._nursery.start_soon(self._flush_quietly)

    async def _flush_quietly(self) -> None:
        try:
            await self._flush()
        except (ConnectionLost, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass

    def _abort(self) -> None:
        """Stop everything: writes (the one in progress too) and every stream task."""
        self._lost = True
        if self._write_scope is not None:
            self._write_scope.cancel()
        self._nursery.cancel_scope.cancel()


async def _refuse(status: int, reason: str, exchange: Http2Exchange) -> None:
    head, body = error_page(status, "edge", reason)
    await exchange.send_response(head)
    await exchange.send_body(body)
    await exchange.end()


def request_head(
    headers: Headers, has_body: bool, scheme: bytes, limits: Http2Limits
) -> tuple[RequestHead, tuple[int, str] | None]:
    """The request h2 decoded, as the proxy sees it, and a (status, reason) if it must be refused.

    :authority becomes the Host an HTTP/1 origin needs. The scheme is the
    connection's, not the client's claim.
    """
    pseudo: dict[bytes, bytes] = {}
    regular: list[tuple[bytes, bytes]] = []
    size = 0
    for name, value in headers:
        size += len(name) + len(value) + 32  # RFC 9113 §6.5.2 accounting
        if name.startswith(b":"):
            pseudo[name] = value
        else:
            regular.append((name, value))
    authority = pseudo.get(b":authority")
    if authority:
        regular = [(b"host", authority), *((name, value) for name, value in regular if name != b"host")]
    else:
        authority = next((value for name, value in regular if name == b"host"), b"")
    method = pseudo.get(b":method", b"")
    # No END_STREAM on HEADERS may still mean no body, as HTTP/1.1 has it: content-length 0.
    has_body = has_body and all(value.strip() != b"0" for name, value in regular if name == b"content-length")
    head = RequestHead(method, pseudo.get(b":path", b""), authority, scheme, tuple(regular), has_body)
    if len(regular) > limits.max_header_fields:
        return head, (431, f"more than {limits.max_header_fields} header fields")
    if size > limits.max_header_list_size:
        return head, (431, f"header list larger than {limits.max_header_list_size} bytes")
    if method == b"CONNECT":
        protocol = pseudo.get(b":protocol")
        if protocol is None:
            return head, (501, "CONNECT is not supported")
        if protocol.lower() != WEBSOCKET:
            return head, (501, f"extended CONNECT for {protocol.decode('latin-1')!r} is not supported")
        return websocket_upgrade(head), None
    return head, None


def websocket_upgrade(head: RequestHead) -> RequestHead:
    """An RFC 8441 CONNECT as the HTTP/1.1 Upgrade request the tunnel and origin speak
    (RFC 6455 §4.1), with a fresh Sec-WebSocket-Key the edge checks the answer against."""
    key = base64.b64encode(os.urandom(16))
    headers = tuple((name, value) for name, value in head.headers if name != b"sec-websocket-key")
    headers += ((b"connection", b"upgrade"), (b"upgrade", WEBSOCKET), (b"sec-websocket-key", key))
    return RequestHead(b"GET", head.target, head.authority, head.scheme, headers, has_body=False)


def websocket_accept(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept an origin must answer `key` with (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest())


def response_headers(headers: Headers) -> Headers:
    """Response fields fit for HTTP/2: lower-case, no connection-specific fields."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    kept = []
    for name, value in headers:
        name = name.lower()
        if name in CONNECTION_SPECIFIC or name in named:
            continue
        if name == b"te" and value.strip().lower() != b"trailers":
            continue
        kept.append((name, value))
    return tuple(kept)


def trailer_fields(headers: Headers) -> Headers:
    """Trailing fields fit for HTTP/2: no pseudo-headers, no connection-specific fields."""
    return tuple((name, value) for name, value in response_headers(headers) if not name.startswith(b":") and name != b"te")
