"""One stream of a tunnel connection as its users see it: a request head, body chunks both
ways, a response; driven by `shared.transport.TunnelConnection`, which feeds its inbound
queue and writes what it queues."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import trio

from shared import protocol
from shared.aio import Signal
from shared.errors import ProtocolError
from shared.events import Headers, RequestHead, ResponseHead
from shared.framing import MAX_FRAME_SIZE
from shared.protocol import KIND_HTTP

if TYPE_CHECKING:
    from shared.transport import TunnelConnection

CLEANUP_TIMEOUT = 1.0
RECEIVE_BATCH = 256 * 1024  # body bytes `receive` joins from the chunks already queued


class StreamResetError(ProtocolError):
    """The peer reset the stream."""


class StreamRefused(StreamResetError):
    """The stream provably never reached the peer's handler (refused, beyond its GOAWAY,
    or never written before the session ended): a request on it may be sent again."""


class TunnelStream:
    """One request/response exchange inside a tunnel connection."""

    __slots__ = (
        "connection", "stream_id", "head", "kind", "trailers", "sent_from_batch", "local_closed",
        "remote_closed", "response_sent", "response_status", "bytes_received", "bytes_sent",
        "_inbound", "_readable", "_writable", "_response", "_error",
    )  # fmt: skip

    def __init__(
        self,
        connection: TunnelConnection,
        stream_id: int,
        head: RequestHead,
        kind: bytes = KIND_HTTP,
    ):
        self.connection = connection
        self.stream_id = stream_id
        self.head = head
        self.kind = kind
        self.trailers: Headers = ()
        self._inbound: deque[tuple[bytes, int]] = deque()  # (data, flow-controlled length)
        self._readable = Signal()  # a chunk, the end, the response head or an error arrived
        self._writable = Signal()  # send credit grew, or an error
        self._response: ResponseHead | None = None
        self._error: BaseException | None = None
        self.sent_from_batch = connection._batches_taken  # its HEADERS are in the next batch the writer takes
        self.local_closed = False
        self.remote_closed = False
        self.response_sent = False
        self.response_status = 0  # (connector) the status sent, for the request log and metrics
        self.bytes_received = 0  # body bytes read with `receive`, and sent with `send` (upgraded pipes too)
        self.bytes_sent = 0

    # Called by the connection's reader ------------------------------------------

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._readable.fire()
        self._writable.fire()

    # Public API -------------------------------------------------------------------

    async def receive_response(self) -> ResponseHead:
        """(edge) Wait for the response head."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._response is None:
            if self._error is not None:
                raise self._error
            await self._readable.wait()
        return self._response

    async def send_response(self, head: ResponseHead) -> None:
        """(connector) Send the response head; with no body the stream ends."""
        self._check()
        self.connection.session.send_response(self.stream_id, head)
        self.response_sent = True
        self.response_status = head.status
        if not head.has_body:
            self.local_closed = True
        await self.connection._flush()
        self.connection._forget_if_done(self)

    async def receive(self) -> bytes:
        """The body bytes that arrived (at most RECEIVE_BATCH of them in one piece, unless one
        chunk is larger), or b"" at the end of the body."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._inbound:
            if self.remote_closed:
                return b""
            if self._error is not None:
                raise self._error
            await self._readable.wait()
        inbound = self._inbound
        data, flow_length = inbound.popleft()
        if inbound and len(data) < RECEIVE_BATCH:  # what else arrived, in one piece: one write downstream
            chunks = [data]
            size = len(data)
            while inbound and size + len(inbound[0][0]) <= RECEIVE_BATCH:
                chunk, length = inbound.popleft()
                chunks.append(chunk)
                size += len(chunk)
                flow_length += length
            if len(chunks) > 1:
                data = b"".join(chunks)
        self.bytes_received += len(data)
        connection = self.connection
        if connection._error is None:  # else the session ended: what had arrived is still passed on
            connection.session.acknowledge(self.stream_id, flow_length)
            connection._take_output()  # credit goes out only once enough was acknowledged
        return data

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send body bytes, waiting for flow-control credit. Frames of a larger chunk are
        views of it, copied once, when the writer joins its output."""
        session = self.connection.session
        view = memoryview(data) if type(data) is bytes and len(data) > MAX_FRAME_SIZE else data
        offset = 0
        while offset < len(data):
            self._check()
            window = session.send_window(self.stream_id)
            if window <= 0:
                await self._writable.wait()
                continue
            chunk = view[offset : offset + window] if offset or window < len(data) else data
            session.send_data(self.stream_id, chunk)
            offset += len(chunk)
            self.bytes_sent += len(chunk)
            await self.connection._flush(len(chunk))

    async def send_trailers(self, headers: Headers) -> None:
        """Finish the body in this direction with trailing headers."""
        self._check()
        self.connection.session.send_trailers(self.stream_id, headers)
        self.local_closed = True
        await self.connection._flush()
        self.connection._forget_if_done(self)

    async def end(self) -> None:
        """Finish the body in this direction."""
        self._check()
        if not self.local_closed:
            self.connection.session.end_stream(self.stream_id)
            self.local_closed = True
            await self.connection._flush()
        self.connection._forget_if_done(self)

    async def aclose(self) -> None:
        """Reset the stream unless both directions finished cleanly; body bytes that
        arrived and were never read give their flow-control credit back either way."""
        if not (self.local_closed and self.remote_closed) and self._error is None:
            self._error = StreamResetError("stream cancelled locally")
            self.connection.session.reset_stream(self.stream_id)
            self.connection._take_output()
        elif self._inbound and self._error is None:  # finished on the wire: no frame, only the credit
            self.connection.session.reset_stream(self.stream_id)
            self.connection._take_output()
        self._inbound.clear()
        self.local_closed = self.remote_closed = True
        self.connection._forget_if_done(self)

    async def __aenter__(self) -> TunnelStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
