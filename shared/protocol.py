"""The tunnel wire protocol, sans-IO.

A tunnel connection is TLS from the connector to the edge carrying two phases:

1. Registration: the connector sends `MAGIC` and one framed JSON `register`
   message; the edge answers with one framed `registered` or `rejected`.
2. A multiplexed session in HTTP/2 framing (h2): the edge is the HTTP/2
   client and opens one stream per visitor request; the connector serves it.
   User headers travel packed in one `burrow-headers` field so that names,
   order and duplicates survive unchanged.

Nothing here awaits or touches a socket; `shared.transport` drives it.
See docs/protocol.md.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack

from shared.errors import ProtocolError
from shared.events import Headers, RequestHead, ResponseHead

PROTOCOL_VERSION = 1
MAGIC = b"BURROW-TUNNEL/1\n"
MAX_REGISTRATION_BYTES = 16 * 1024
_LENGTH = struct.Struct("!I")

# Session limits; the edge sizes its stream use by the connector's settings.
MAX_CONCURRENT_STREAMS = 1000
STREAM_WINDOW = 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
MAX_FRAME_SIZE = 64 * 1024
MAX_HEADER_LIST_SIZE = 256 * 1024

PACKED_HEADERS = b"burrow-headers"
# HTTP/2 has no final 1xx response: a 101 Switching Protocols travels as
# `:status 200` with the real status here.
FINAL_STATUS = b"burrow-status"
STREAM_KIND = b"burrow-kind"
KIND_HTTP = b"http"  # a request and its response
KIND_UPGRADE = b"upgrade"  # a request whose 101 answer turns the stream into a byte pipe
STREAM_KINDS = frozenset({KIND_HTTP, KIND_UPGRADE})

# A PING with this payload announces a graceful drain: open no new streams.
# (h2 moves to CLOSED on GOAWAY, so GOAWAY is only sent once streams are done.)
DRAIN_PING = b"DRAIN\x00\x00\x00"

# Error codes used on RST_STREAM and GOAWAY.
NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
CANCEL = h2.errors.ErrorCodes.CANCEL
REFUSED_STREAM = h2.errors.ErrorCodes.REFUSED_STREAM  # the stream was never processed: safe to retry
INTERNAL_ERROR = h2.errors.ErrorCodes.INTERNAL_ERROR


# --- Registration -----------------------------------------------------------


@dataclass(frozen=True)
class Register:
    """The connector's first message on a new tunnel connection."""

    tunnel_id: str
    secret: bytes
    connector_id: str
    conn_index: int
    client_version: str

    def to_wire(self) -> bytes:
        return MAGIC + frame(
            {
                "type": "register",
                "version": PROTOCOL_VERSION,
                "tunnel_id": self.tunnel_id,
                "secret": base64.b64encode(self.secret).decode(),
                "connector_id": self.connector_id,
                "conn_index": self.conn_index,
                "client_version": self.client_version,
            }
        )


@dataclass(frozen=True)
class Registered:
    """The edge accepted the connection."""

    connection_id: str
    edge_id: str

    def to_wire(self) -> bytes:
        return frame(
            {"type": "registered", "connection_id": self.connection_id, "edge_id": self.edge_id}
        )


@dataclass(frozen=True)
class Rejected:
    """The edge refused the connection; `retryable` says whether trying later can help."""

    reason: str
    retryable: bool

    def to_wire(self) -> bytes:
        return frame({"type": "rejected", "reason": self.reason, "retryable": self.retryable})


def frame(message: dict) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _LENGTH.pack(len(body)) + body


class RegistrationReader:
    """Collects bytes until one framed registration message is complete."""

    def __init__(self, *, expect_magic: bool) -> None:
        self._buffer = bytearray()
        self._expect_magic = expect_magic

    def feed(self, data: bytes) -> tuple[Register | Registered | Rejected | None, bytes]:
        """Add `data`; return (message or None, bytes after the message)."""
        self._buffer += data
        if len(self._buffer) > MAX_REGISTRATION_BYTES + len(MAGIC) + _LENGTH.size:
            raise ProtocolError("registration message too large")
        start = 0
        if self._expect_magic:
            if not MAGIC.startswith(bytes(self._buffer[: len(MAGIC)])):
                raise ProtocolError("not a Burrow tunnel client, or an unsupported protocol version")
            if len(self._buffer) < len(MAGIC):
                return None, b""
            start = len(MAGIC)
        if len(self._buffer) < start + _LENGTH.size:
            return None, b""
        (length,) = _LENGTH.unpack_from(self._buffer, start)
        if length > MAX_REGISTRATION_BYTES:
            raise ProtocolError("registration message too large")
        end = start + _LENGTH.size + length
        if len(self._buffer) < end:
            return None, b""
        message = _parse_registration(bytes(self._buffer[start + _LENGTH.size : end]))
        return message, bytes(self._buffer[end:])


def _parse_registration(body: bytes) -> Register | Registered | Rejected:
    try:
        message = json.loads(body)
        kind = message["type"]
        if kind == "register":
            if message["version"] != PROTOCOL_VERSION:
                raise ProtocolError(f"unsupported protocol version {message['version']!r}")
            return Register(
                tunnel_id=str(message["tunnel_id"]),
                secret=base64.b64decode(message["secret"], validate=True),
                connector_id=str(message["connector_id"]),
                conn_index=int(message["conn_index"]),
                client_version=str(message["client_version"]),
            )
        if kind == "registered":
            return Registered(str(message["connection_id"]), str(message["edge_id"]))
        if kind == "rejected":
            return Rejected(str(message["reason"]), bool(message["retryable"]))
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:  # inf, deep nesting
        raise ProtocolError(f"malformed registration message: {exc}") from exc
    raise ProtocolError(f"unknown registration message type {kind!r}")


# --- Header packing -----------------------------------------------------------


def pack_headers(headers: Headers) -> bytes:
    """Headers as one field value: `b64(name):b64(value)` joined by `;`."""
    encode = base64.b64encode
    return b";".join(encode(name) + b":" + encode(value) for name, value in headers)


def unpack_headers(packed: bytes) -> Headers:
    if not packed:
        return ()
    decode = base64.b64decode
    try:
        return tuple(
            (decode(name, validate=True), decode(value, validate=True))
            for name, _, value in (item.partition(b":") for item in packed.split(b";"))
        )
    except ValueError as exc:
        raise ProtocolError("malformed packed headers") from exc


# --- Session events -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """(connector) The edge opened a stream carrying a request."""

    stream_id: int
    head: RequestHead
    kind: bytes = KIND_HTTP


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    """(edge) The connector answered a stream with a response head."""

    stream_id: int
    head: ResponseHead


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Body bytes; `flow_length` must be acknowledged once they are passed on."""

    stream_id: int
    data: bytes
    flow_length: int


@dataclass(frozen=True, slots=True)
class TrailersReceived:
    """Trailing headers; the stream's body is complete."""

    stream_id: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class StreamEnded:
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """Send credit grew; `stream_id` 0 means the whole connection."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PingAcked:
    payload: bytes


@dataclass(frozen=True, slots=True)
class DrainRequested:
    """The peer is draining: open no new streams, finish the open ones."""


@dataclass(frozen=True, slots=True)
class GoAway:
    """The peer closed the session (GOAWAY)."""

    error_code: int
    last_stream_id: int


Event = (
    StreamOpened
    | ResponseStarted
    | DataReceived
    | TrailersReceived
    | StreamEnded
    | StreamReset
    | WindowOpened
    | PingAcked
    | DrainRequested
    | GoAway
)


# --- The session ----------------------------------------------------------------


class _PlainEncoder(hpack.Encoder):
    """HPACK without Huffman coding: the packed header values are base64, which
    Huffman barely shrinks, and coding them in pure Python costs more than it saves."""

    def encode(self, headers, huffman=False):  # noqa: ARG002 - h2 passes no argument
        return super().encode(headers, huffman=False)



class TunnelSession:
    """One multiplexed tunnel session over h2: bytes in, events out, bytes to send.

    `role` is "edge" (opens streams, HTTP/2 client side) or "connector"
    (serves streams, HTTP/2 server side).
    """

    def __init__(self, role: str) -> None:
        if role not in ("edge", "connector"):
            raise ValueError(f"unknown role {role!r}")
        self.role = role
        # Both ends are Burrow: header validation is skipped (user headers travel
        # packed and are validated where they re-enter HTTP/1.1 or HTTP/2).
        config = h2.config.H2Configuration(
            client_side=role == "edge",
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.encoder = _PlainEncoder()
        self._h2.local_settings = h2.settings.Settings(
            client=role == "edge",
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self._h2.max_inbound_frame_size = MAX_FRAME_SIZE
        self._h2.decoder.max_header_list_size = MAX_HEADER_LIST_SIZE
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self._handlers = {
            h2.events.RequestReceived: self._on_request,
            h2.events.ResponseReceived: self._on_response,
            h2.events.DataReceived: self._on_data,
            h2.events.TrailersReceived: lambda e: [
                TrailersReceived(e.stream_id, unpack_headers(dict(e.headers).get(PACKED_HEADERS, b"")))
            ],
            h2.events.StreamEnded: lambda e: [StreamEnded(e.stream_id)],
            h2.events.StreamReset: lambda e: [StreamReset(e.stream_id, int(e.error_code))],
            h2.events.WindowUpdated: lambda e: [WindowOpened(e.stream_id)],
            h2.events.RemoteSettingsChanged: lambda e: [WindowOpened(0)],
            h2.events.PingAckReceived: lambda e: [PingAcked(e.ping_data)],
            h2.events.PingReceived: lambda e: [DrainRequested()] if e.ping_data == DRAIN_PING else [],
            h2.events.ConnectionTerminated: lambda e: [
                GoAway(int(e.error_code), e.last_stream_id or 0)
            ],
        }

    # Input ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the peer; return the events they complete."""
        try:
            h2_events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            raise ProtocolError(f"tunnel peer broke HTTP/2: {exc}") from exc
        pending = self._h2.incoming_buffer._data  # h2 checks a frame's size only once all of it arrived
        if len(pending) >= 9 and int.from_bytes(pending[:3], "big") > self._h2.max_inbound_frame_size:
            raise ProtocolError(f"tunnel peer broke HTTP/2: a frame of {int.from_bytes(pending[:3], 'big')} bytes")
        events: list[Event] = []
        for h2_event in h2_events:
            handler = self._handlers.get(type(h2_event))
            if handler is not None:
                events.extend(handler(h2_event))
        return events

    def _on_request(self, event: h2.events.RequestReceived) -> list[Event]:
        fields = dict(event.headers)
        try:
            head = RequestHead(
                method=fields[b":method"],
                target=fields[b":path"],
                authority=fields[b":authority"],
                scheme=fields[b":scheme"],
                headers=unpack_headers(fields.get(PACKED_HEADERS, b"")),
                has_body=event.stream_ended is None,
            )
        except KeyError as exc:
            raise ProtocolError(f"tunnel stream without {exc.args[0]!r}") from exc
        kind = fields.get(STREAM_KIND, KIND_HTTP)
        if kind not in STREAM_KINDS:
            raise ProtocolError(f"unknown tunnel stream kind {kind!r}")
        return [StreamOpened(event.stream_id, head, kind)]

    def _on_response(self, event: h2.events.ResponseReceived) -> list[Event]:
        fields = dict(event.headers)
        try:
            status = int(fields.get(FINAL_STATUS) or fields[b":status"])
        except (KeyError, ValueError) as exc:
            raise ProtocolError("tunnel response without a valid :status") from exc
        if not 100 <= status <= 999:
            raise ProtocolError(f"tunnel response with status {status}")
        head = ResponseHead(status, unpack_headers(fields.get(PACKED_HEADERS, b"")), event.stream_ended is None)
        return [ResponseStarted(event.stream_id, head)]

    def _on_data(self, event: h2.events.DataReceived) -> list[Event]:
        return [DataReceived(event.stream_id, event.data, event.flow_controlled_length)]

    # Output --------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        return self._h2.data_to_send()

    def open_stream(self, head: RequestHead, kind: bytes = KIND_HTTP) -> int:
        """(edge) Start a stream carrying `head`; end it at once when there is no body
        (an upgrade stream stays open: its bytes flow after the 101)."""
        stream_id = self._h2.get_next_available_stream_id()
        fields = [
            (b":method", head.method),
            (b":scheme", head.scheme),
            (b":authority", head.authority),
            (b":path", head.target),
            (STREAM_KIND, kind),
            (PACKED_HEADERS, pack_headers(head.headers)),
        ]
        self._send_headers(stream_id, fields, end_stream=not head.has_body and kind == KIND_HTTP)
        return stream_id

    def send_response(self, stream_id: int, head: ResponseHead) -> None:
        """(connector) Answer stream `stream_id` with `head`."""
        status = str(head.status).encode()
        fields = [(b":status", status), (PACKED_HEADERS, pack_headers(head.headers))]
        if head.status < 200:
            fields = [(b":status", b"200"), (FINAL_STATUS, status), fields[1]]
        self._send_headers(stream_id, fields, end_stream=not head.has_body)

    def _send_headers(self, stream_id: int, fields: list, *, end_stream: bool) -> None:
        try:
            self._h2.send_headers(stream_id, fields, end_stream=end_stream)
        except h2.exceptions.TooManyStreamsError as exc:
            raise ProtocolError("tunnel session has no free stream") from exc
        except h2.exceptions.ProtocolError as exc:
            raise ProtocolError(f"cannot send headers on stream {stream_id}: {exc}") from exc

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        """Send trailing headers, ending the stream in this direction."""
        self._send_headers(stream_id, [(PACKED_HEADERS, pack_headers(headers))], end_stream=True)

    def send_window(self, stream_id: int) -> int:
        """How many body bytes may be sent on `stream_id` right now."""
        try:
            window = self._h2.local_flow_control_window(stream_id)
        except h2.exceptions.StreamClosedError:
            return 0
        return min(window, self._h2.max_outbound_frame_size)

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        """Send `data` (at most `send_window(stream_id)` bytes)."""
        try:
            self._h2.send_data(stream_id, data, end_stream=end_stream)
        except h2.exceptions.ProtocolError as exc:
            raise ProtocolError(f"cannot send data on stream {stream_id}: {exc}") from exc

    def end_stream(self, stream_id: int) -> None:
        try:
            self._h2.end_stream(stream_id)
        except h2.exceptions.ProtocolError as exc:
            raise ProtocolError(f"cannot end stream {stream_id}: {exc}") from exc

    def reset_stream(self, stream_id: int, error_code: int = CANCEL) -> None:
        """Abort `stream_id`; a no-op when it is already closed."""
        try:
            self._h2.reset_stream(stream_id, error_code)
        except h2.exceptions.StreamClosedError:
            pass

    def acknowledge(self, stream_id: int, flow_length: int) -> None:
        """Return credit for bytes that were passed on."""
        self._h2.acknowledge_received_data(flow_length, stream_id)

    @property
    def closed(self) -> bool:
        """A GOAWAY was sent or received: no frame may be sent any more."""
        return self._h2.state_machine.state is h2.connection.ConnectionState.CLOSED

    def ping(self, payload: bytes) -> None:
        self._h2.ping(payload)

    def announce_drain(self) -> None:
        """Tell the peer to open no new streams on this session."""
        self._h2.ping(DRAIN_PING)

    def goaway(self, error_code: int = NO_ERROR) -> None:
        """Close the session; no frame may be sent after this."""
        self._h2.close_connection(error_code)

    @property
    def open_streams(self) -> int:
        return self._h2.open_outbound_streams + self._h2.open_inbound_streams

    @property
    def max_streams(self) -> int:
        """How many streams this side may have open (the peer's limit)."""
        return self._h2.remote_settings.max_concurrent_streams
