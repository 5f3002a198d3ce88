"""The tunnel session, sans-IO: the second phase of a tunnel connection.

After registration (`shared.registration`), a multiplexed session in Burrow's
own binary framing (`shared.framing`): the edge opens one stream per visitor
request; the connector serves it. Heads travel as length-prefixed fields, so
names, order and duplicates of headers survive unchanged. Events out are
`shared.session_events`.

Nothing here awaits or touches a socket; `shared.transport` drives it.
See docs/protocol.md.
"""

from __future__ import annotations

from shared import framing
from shared.errors import ProtocolError
from shared.events import Headers, RequestHead, ResponseHead
from shared.framing import (
    DATA,
    END_STREAM,
    GOAWAY,
    HEADER,
    HEADER_SIZE,
    PAYLOAD_LIMITS,
    PING,
    PING_ACK,
    REQUEST,
    RESET,
    RESPONSE,
    TRAILERS,
    U32,
    U32_PAIR,
    WINDOW,
)
from shared.session_events import (
    DataReceived,
    DrainRequested,
    Event,
    GoAway,
    PingAcked,
    ResponseStarted,
    StreamEnded,
    StreamOpened,
    StreamReset,
    TrailersReceived,
    WindowOpened,
)

# Session limits: constants of protocol version 2, the same on both sides.
MAX_CONCURRENT_STREAMS = 1000
STREAM_WINDOW = 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
MAX_FRAME_SIZE = framing.MAX_FRAME_SIZE  # DATA payload
MAX_HEADER_LIST_SIZE = framing.MAX_HEADER_LIST_SIZE  # a head's payload

KIND_HTTP = b"http"  # a request and its response
KIND_UPGRADE = b"upgrade"  # a request whose 101 answer turns the stream into a byte pipe
KIND_PRIVATE = b"private"  # a flow to a private-network address (`shared.private_flows`); a 200 answer starts its bytes
KIND_TCP = b"tcp"  # a visitor's connection to a public TCP port: a 200 answer, then a byte pipe
KIND_UDP = b"udp"  # one flow of a public UDP port: a 200 answer, then datagrams (`shared.datagrams`)
KIND_STATUS = b"status"  # the edge asks the connector for its state (`shared.pool_status`): a 200 answer and a JSON body
KIND_EDGES = b"edges"  # the edge tells the connector the live edges changed (`shared.edge_news`): a 204 answer
STREAM_KINDS = frozenset({KIND_HTTP, KIND_UPGRADE, KIND_PRIVATE, KIND_TCP, KIND_UDP, KIND_STATUS, KIND_EDGES})
ANSWERED_KINDS = frozenset({KIND_HTTP, KIND_STATUS, KIND_EDGES})  # a request and its answer: without a body, the request ends at once
PORT_KINDS = frozenset({KIND_TCP, KIND_UDP})  # sent only to connectors that registered FEATURE_PORTS
# KIND_STATUS is sent only to connectors that registered FEATURE_STATUS, KIND_EDGES only to those that registered FEATURE_EDGES.

# A PING with this payload announces a graceful drain: open no new streams.
# (GOAWAY closes the session at once, so it is only sent once streams are done.)
DRAIN_PING = b"DRAIN\x00\x00\x00"

# Error codes used on RESET and GOAWAY (the HTTP/2 values).
NO_ERROR = 0x0
INTERNAL_ERROR = 0x2
REFUSED_STREAM = 0x7  # the stream was never processed: safe to retry
CANCEL = 0x8


class _Stream:
    """What the session tracks for one open stream."""

    __slots__ = ("head_received", "head_sent", "local_closed", "receive", "remote_closed", "send", "unacked", "unreported")

    def __init__(self) -> None:
        self.send = STREAM_WINDOW  # DATA bytes this side may still send
        self.receive = STREAM_WINDOW  # DATA bytes the peer may still send
        self.unreported = 0  # acknowledged bytes not yet granted back with WINDOW
        self.unacked = 0  # received bytes not yet acknowledged
        self.head_sent = False
        self.head_received = False
        self.local_closed = False
        self.remote_closed = False


_VIOLATION = "tunnel peer broke the protocol: "


class TunnelSession:
    """One multiplexed tunnel session: bytes in, events out, bytes to send.

    `role` is "edge" (opens streams, with odd ids) or "connector" (serves them).
    """

    def __init__(self, role: str) -> None:
        if role not in ("edge", "connector"):
            raise ValueError(f"unknown role {role!r}")
        self.role = role
        self._is_edge = role == "edge"
        self._streams: dict[int, _Stream] = {}
        self._finished_unacked: dict[int, int] = {}  # streams done on the wire whose bytes are not all acknowledged
        self._last_stream_id = 0  # the highest stream id opened so far (only the edge opens)
        self._send_credit = CONNECTION_WINDOW
        self._receive_credit = CONNECTION_WINDOW
        self._unreported = 0  # connection-level: acknowledged bytes not yet granted back
        self._out: list[bytes | memoryview] = []
        self._header = b""  # the first bytes of a header cut short
        self._pieces: list[bytes | memoryview] = []  # the payload received so far of a frame cut short
        self._frame = (DATA, 0, 0)  # that frame's kind, flags and stream id
        self._missing = 0  # the bytes that frame still needs
        self._closed = False
        self._handlers = (
            self._on_data, self._on_request, self._on_response, self._on_trailers, self._on_reset,
            self._on_window, self._on_ping, self._on_ping_ack, self._on_goaway,
        )  # fmt: skip

    # Input ---------------------------------------------------------------------

    def receive_data(self, received: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes read from the peer; return the events they complete.

        A frame cut across reads keeps its pieces as views of the reads and is
        joined once, when its last piece arrives: its payload is copied once.
        """
        events: list[Event] = []
        # slices must be bytes (a TLS read already is)
        data = received if type(received) is bytes else bytes(received)
        pos = 0
        if self._missing:
            pos = self._complete(events, data)
            if pos < 0:
                return events
        elif self._header:  # the first bytes of a header
            data = self._header + data
            self._header = b""
        size = len(data)
        handlers = self._handlers
        unpack = HEADER.unpack_from
        length: int
        kind: int
        flags: int
        stream_id: int
        try:
            while size - pos >= HEADER_SIZE:
                length, kind, flags, stream_id = unpack(data, pos)
                self._check_header(length, kind, flags)
                end = pos + HEADER_SIZE + length
                if end > size:
                    self._frame = (kind, flags, stream_id)
                    self._missing = end - size
                    self._pieces.append(memoryview(data)[pos + HEADER_SIZE :])
                    return events
                if not self._closed:  # after GOAWAY, frames still in flight are ignored
                    handlers[kind](events, data, pos + HEADER_SIZE, end, flags, stream_id)
                pos = end
        except ProtocolError as exc:
            raise ProtocolError(_VIOLATION + str(exc)) from None
        if pos < size:
            self._header = data[pos:]
        return events

    @staticmethod
    def _check_header(length: int, kind: int, flags: int) -> None:
        if kind > GOAWAY:
            raise ProtocolError(f"unknown frame type {kind}")
        if length > PAYLOAD_LIMITS[kind]:
            raise ProtocolError(f"a frame of {length} bytes ({framing.TYPE_NAMES[kind]}, limit {PAYLOAD_LIMITS[kind]})")
        if flags and (flags != END_STREAM or kind > TRAILERS):
            raise ProtocolError(f"flags {flags:#x} on a {framing.TYPE_NAMES[kind]} frame")

    def _complete(self, events: list[Event], data: bytes) -> int:
        """Add `data` to the frame cut short; handle the frame once whole and return
        where the bytes after it start in `data`, or -1 while it still needs more."""
        missing = self._missing
        pieces = self._pieces
        if len(data) < missing:
            pieces.append(data)
            self._missing = missing - len(data)
            return -1
        pieces.append(memoryview(data)[:missing])
        payload = b"".join(pieces)
        pieces.clear()
        self._missing = 0
        kind, flags, stream_id = self._frame
        if not self._closed:
            try:
                self._handlers[kind](events, payload, 0, len(payload), flags, stream_id)
            except ProtocolError as exc:
                raise ProtocolError(_VIOLATION + str(exc)) from None
        return missing

    def _stream(self, stream_id: int, kind: str) -> _Stream | None:
        """The open stream a frame is for; None when it is finished or was reset (ignore the frame)."""
        stream = self._streams.get(stream_id)
        if stream is None and (stream_id > self._last_stream_id or stream_id == 0):
            raise ProtocolError(f"{kind} frame for stream {stream_id}, which was never opened")
        return stream

    def _on_data(self, events: list, buf: bytes, start: int, end: int, flags: int, stream_id: int) -> None:
        length = end - start
        if length > self._receive_credit:
            raise ProtocolError(f"DATA of {length} bytes beyond the connection's flow-control window")
        self._receive_credit -= length
        stream = self._stream(stream_id, "DATA")
        if stream is None:  # finished or reset here: its bytes are dropped, their credit returned
            self._grant_connection(length)
            return
        if not stream.head_received or stream.remote_closed:
            raise ProtocolError(f"DATA on stream {stream_id} outside its body")
        if length > stream.receive:
            raise ProtocolError(f"DATA of {length} bytes beyond stream {stream_id}'s flow-control window")
        stream.receive -= length
        if length:
            stream.unacked += length
            events.append(DataReceived(stream_id, buf[start:end], length))
            if self._receive_credit < MAX_FRAME_SIZE and self._unreported:
                self._grant_connection(0)  # the peer is nearly blocked: return what was consumed now
        if flags:
            self._remote_end(events, stream_id, stream)

    def _on_request(self, events: list, buf: bytes, start: int, end: int, flags: int, stream_id: int) -> None:
        if self._is_edge:
            raise ProtocolError("the connector opened a stream")
        if stream_id <= self._last_stream_id or not stream_id & 1:
            raise ProtocolError(f"stream {stream_id} opened out of order (after {self._last_stream_id})")
        self._last_stream_id = stream_id
        method, scheme, authority, target, kind, headers = framing.unpack_request(buf, start, end)
        if kind not in STREAM_KINDS:
            raise ProtocolError(f"unknown stream kind {kind!r}")
        if len(self._streams) >= MAX_CONCURRENT_STREAMS:
            self._out += (HEADER.pack(4, RESET, 0, stream_id), U32.pack(REFUSED_STREAM))
            return
        stream = self._streams[stream_id] = _Stream()
        stream.head_received = True
        head = RequestHead(method, target, authority, scheme, headers, not flags)
        events.append(StreamOpened(stream_id, head, kind))
        if flags:
            self._remote_end(events, stream_id, stream)

    def _on_response(self, events: list, buf: bytes, start: int, end: int, flags: int, stream_id: int) -> None:
        if not self._is_edge:
            raise ProtocolError("the edge sent a RESPONSE")
        status, headers = framing.unpack_response(buf, start, end)
        stream = self._stream(stream_id, "RESPONSE")
        if stream is None:
            return
        if stream.head_received:
            raise ProtocolError(f"a second RESPONSE on stream {stream_id}")
        stream.head_received = True
        events.append(ResponseStarted(stream_id, ResponseHead(status, headers, not flags)))
        if flags:
            self._remote_end(events, stream_id, stream)

    def _on_trailers(self, events: list, buf: bytes, start: int, end: int, flags: int, stream_id: int) -> None:
        headers = framing.unpack_trailers(buf, start, end)
        if not flags:
            raise ProtocolError(f"TRAILERS without END_STREAM on stream {stream_id}")
        stream = self._stream(stream_id, "TRAILERS")
        if stream is None:
            return
        if not stream.head_received or stream.remote_closed:
            raise ProtocolError(f"TRAILERS on stream {stream_id} outside its body")
        events.append(TrailersReceived(stream_id, headers))
        self._remote_end(events, stream_id, stream)

    def _remote_end(self, events: list, stream_id: int, stream: _Stream) -> None:
        stream.remote_closed = True
        events.append(StreamEnded(stream_id))
        if stream.local_closed:
            self._forget(stream_id, stream)

    def _forget(self, stream_id: int, stream: _Stream) -> None:
        """A stream finished both ways; bytes not yet acknowledged keep their credit owed."""
        del self._streams[stream_id]
        if stream.unacked:
            self._finished_unacked[stream_id] = stream.unacked

    def _on_reset(self, events: list, buf: bytes, start: int, end: int, flags: int, stream_id: int) -> None:
        if end - start != 4:
            raise ProtocolError(f"a RESET of {end - start} bytes")
        if (stream := self._stream(stream_id, "RESET")) is None:
            return
        del self._streams[stream_id]
        if stream.unacked:  # bytes the consumer will now drop: their connection credit is returned
            self._grant_connection(stream.unacked)
        events.append(StreamReset(stream_id, U32.unpack_from(buf, start)[0]))

    def _on_window(self, events: list, buf: bytes, start: int, end: int, flags: int, stream_id: int) -> None:
        if end - start != 4:
            raise ProtocolError(f"a WINDOW of {end - start} bytes")
        (increment,) = U32.unpack_from(buf, start)
        if not increment:
            raise ProtocolError("a WINDOW of 0")
        if stream_id == 0:
            self._send_credit += increment
            if self._send_credit > framing.MAX_WINDOW:
                raise ProtocolError("the connection's flow-control window overflowed")
        else:
            stream = self._stream(stream_id, "WINDOW")
            if stream is None:
                return
            stream.send += increment
            if stream.send > framing.MAX_WINDOW:
                raise ProtocolError(f"stream {stream_id}'s flow-control window overflowed")
        events.append(WindowOpened(stream_id))

    def _on_ping(self, events: list, buf: bytes, start: int, end: int, flags: int, stream_id: int) -> None:
        payload = self._control_payload(buf, start, end, stream_id, "PING")
        self._out += (HEADER.pack(8, PING_ACK, 0, 0), payload)
        if payload == DRAIN_PING:
            events.append(DrainRequested())

    def _on_ping_ack(self, events: list, buf: bytes, start: int, end: int, flags: int, stream_id: int) -> None:
        events.append(PingAcked(self._control_payload(buf, start, end, stream_id, "PING_ACK")))

    def _on_goaway(self, events: list, buf: bytes, start: int, end: int, flags: int, stream_id: int) -> None:
        error_code, last_stream_id = U32_PAIR.unpack(self._control_payload(buf, start, end, stream_id, "GOAWAY"))
        self._closed = True
        events.append(GoAway(error_code, last_stream_id))

    @staticmethod
    def _control_payload(buf: bytes, start: int, end: int, stream_id: int, kind: str) -> bytes:
        if stream_id or end - start != 8:
            raise ProtocolError(f"a {kind} of {end - start} bytes on stream {stream_id}")
        return buf[start:end]

    # Output --------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        return b"".join(self.take_output())

    def take_output(self) -> list[bytes | memoryview]:
        """The frames queued since the last call, as pieces not yet joined: a writer that
        gathers several calls' output joins it once."""
        out = self._out
        if out:
            self._out = []
        return out

    def open_stream(self, head: RequestHead, kind: bytes = KIND_HTTP) -> int:
        """(edge) Start a stream carrying `head`; end it at once when there is no body
        (an upgrade stream stays open: its bytes flow after the 101)."""
        if not self._is_edge:
            raise ProtocolError("only the edge opens streams")
        self._check_open()
        stream_id = self._last_stream_id + 2 if self._last_stream_id else 1
        if len(self._streams) >= MAX_CONCURRENT_STREAMS or stream_id > framing.MAX_STREAM_ID:
            raise ProtocolError("tunnel session has no free stream")
        payload = framing.pack_request(head.method, head.scheme, head.authority, head.target, kind, head.headers)
        end_stream = not head.has_body and kind in ANSWERED_KINDS
        self._last_stream_id = stream_id
        stream = self._streams[stream_id] = _Stream()
        stream.head_sent = True
        stream.local_closed = end_stream
        self._out += (HEADER.pack(len(payload), REQUEST, END_STREAM if end_stream else 0, stream_id), payload)
        return stream_id

    def send_response(self, stream_id: int, head: ResponseHead) -> None:
        """(connector) Answer stream `stream_id` with `head` (any status 100-999, 101 included)."""
        stream = self._sendable(stream_id)
        if stream.head_sent:
            raise ProtocolError(f"cannot send a second response on stream {stream_id}")
        payload = framing.pack_response(head.status, head.headers)
        stream.head_sent = True
        self._out += (HEADER.pack(len(payload), RESPONSE, 0 if head.has_body else END_STREAM, stream_id), payload)
        if not head.has_body:
            self._local_end(stream_id, stream)

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        """Send trailing headers, ending the stream in this direction."""
        stream = self._sendable(stream_id, body=True)
        payload = framing.pack_trailers(headers)
        self._out += (HEADER.pack(len(payload), TRAILERS, END_STREAM, stream_id), payload)
        self._local_end(stream_id, stream)

    def send_window(self, stream_id: int) -> int:
        """How many body bytes may be sent on `stream_id` right now."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed or self._closed:
            return 0
        return min(stream.send, self._send_credit, MAX_FRAME_SIZE)

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview, *, end_stream: bool = False) -> None:
        """Send `data` (at most `send_window(stream_id)` bytes). A memoryview is queued as it
        is, not copied: it must be of bytes, which cannot change."""
        stream = self._sendable(stream_id, body=True)
        length = len(data)
        if length > min(stream.send, self._send_credit, MAX_FRAME_SIZE):
            raise ProtocolError(f"cannot send {length} bytes on stream {stream_id}: beyond its send window")
        stream.send -= length
        self._send_credit -= length
        if type(data) is not bytes and not (type(data) is memoryview and type(data.obj) is bytes):
            data = bytes(data)
        self._out += (HEADER.pack(length, DATA, END_STREAM if end_stream else 0, stream_id), data)
        if end_stream:
            self._local_end(stream_id, stream)

    def end_stream(self, stream_id: int) -> None:
        stream = self._sendable(stream_id, body=True)
        self._out.append(HEADER.pack(0, DATA, END_STREAM, stream_id))
        self._local_end(stream_id, stream)

    def _sendable(self, stream_id: int, *, body: bool = False) -> _Stream:
        self._check_open()
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            raise ProtocolError(f"cannot send on stream {stream_id}: it is closed")
        if body and not stream.head_sent:
            raise ProtocolError(f"cannot send a body on stream {stream_id} before its head")
        return stream

    def _local_end(self, stream_id: int, stream: _Stream) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            self._forget(stream_id, stream)

    def _check_open(self) -> None:
        if self._closed:
            raise ProtocolError("tunnel session is closed (GOAWAY)")

    def reset_stream(self, stream_id: int, error_code: int = CANCEL) -> None:
        """Abort `stream_id` (no frame when it already finished on the wire). Bytes received
        on it and not yet acknowledged will never be: their connection credit is returned now."""
        stream = self._streams.pop(stream_id, None)
        unacked = stream.unacked if stream is not None else self._finished_unacked.pop(stream_id, 0)
        if self._closed:
            return
        if stream is not None:
            self._out += (HEADER.pack(4, RESET, 0, stream_id), U32.pack(error_code))
        if unacked:
            self._grant_connection(unacked)

    def acknowledge(self, stream_id: int, flow_length: int) -> None:
        """Return credit for bytes that were passed on. WINDOW frames are batched: one goes
        out once half a window is consumed, or at once while the peer is nearly blocked."""
        if flow_length <= 0 or self._closed:
            return
        stream = self._streams.get(stream_id)
        if stream is None:  # finished: what it still owes, once; reset: returned already
            owed = self._finished_unacked.pop(stream_id, 0)
            if owed > flow_length:
                self._finished_unacked[stream_id] = owed - flow_length
            self._grant_connection(min(owed, flow_length))
            return
        self._grant_connection(flow_length)
        stream.unacked -= flow_length
        if stream.remote_closed:
            return
        stream.unreported += flow_length
        if stream.unreported >= STREAM_WINDOW // 2 or stream.receive < MAX_FRAME_SIZE:
            stream.receive += stream.unreported
            self._out += (HEADER.pack(4, WINDOW, 0, stream_id), U32.pack(stream.unreported))
            stream.unreported = 0

    def _grant_connection(self, consumed: int) -> None:
        self._unreported += consumed
        if self._unreported and (
            self._unreported >= CONNECTION_WINDOW // 2 or self._receive_credit < MAX_FRAME_SIZE
        ):
            self._receive_credit += self._unreported
            self._out += (HEADER.pack(4, WINDOW, 0, 0), U32.pack(self._unreported))
            self._unreported = 0

    @property
    def closed(self) -> bool:
        """A GOAWAY was sent or received: no frame may be sent any more."""
        return self._closed

    def ping(self, payload: bytes) -> None:
        self._check_open()
        if len(payload) != 8:
            raise ProtocolError("a PING payload is 8 bytes")
        self._out += (HEADER.pack(8, PING, 0, 0), payload)

    def announce_drain(self) -> None:
        """Tell the peer to open no new streams on this session."""
        self.ping(DRAIN_PING)

    def goaway(self, error_code: int = NO_ERROR) -> None:
        """Close the session; no frame may be sent after this. A no-op once closed."""
        if self._closed:
            return
        self._closed = True
        last = 0 if self._is_edge else self._last_stream_id  # the last stream this side took
        self._out += (HEADER.pack(8, GOAWAY, 0, 0), U32_PAIR.pack(error_code, last))

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def max_streams(self) -> int:
        """How many streams this side may have open (a constant of the protocol)."""
        return MAX_CONCURRENT_STREAMS
