"""One HTTP/2 request stream as the proxy's `Exchange`, and an extended-CONNECT stream as a
trio byte stream; the connection (`edge.visitors.http2`) feeds and writes them."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from edge.visitors.http2_fields import (
    WEBSOCKET,
    response_headers,
    trailer_fields,
    websocket_accept,
)
from edge.visitors.http2_send import SEND_BATCH
from shared.errors import ProtocolError
from shared.events import Headers, RequestHead, ResponseHead

if TYPE_CHECKING:
    from edge.visitors.http2 import Http2Connection

log = logging.getLogger(__name__)

NO_BODY_STATUSES = frozenset({204, 304})
_END = None  # marks the end of a request body in an exchange's queue


class Http2Exchange:
    """One request stream on an HTTP/2 connection."""

    def __init__(self, connection: Http2Connection, stream_id: int, head: RequestHead) -> None:
        self._conn = connection
        self._out = connection.writer
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
            await self._out.send(action)

    async def release(self) -> None:
        """Write what `hold()` kept back, and hold no more."""
        if self._held:
            self._held = False
            await self._out.flush()

    async def receive_body(self) -> bytes:
        return await self._receive(self._conn.limits.body_idle_timeout)

    async def _receive(self, idle_timeout: float) -> bytes:
        await self._out.acknowledge(self.stream_id, self._credit)
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
            offset += await self._out.send_data(self.stream_id, data[offset:], end_stream=last, flush=not self._held)
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

