"""What a tunnel session reports to its driver (`shared.transport`): one event per frame that
matters, produced by `shared.protocol.TunnelSession.receive_data`.

Values, never assigned once built; each writes its own `__init__` (see shared/events.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import Headers, RequestHead, ResponseHead


@dataclass(slots=True, init=False)
class StreamOpened:
    """(connector) The edge opened a stream carrying a request."""

    stream_id: int
    head: RequestHead
    kind: bytes  # `shared.protocol.STREAM_KINDS`

    def __init__(self, stream_id: int, head: RequestHead, kind: bytes) -> None:
        self.stream_id = stream_id
        self.head = head
        self.kind = kind


@dataclass(slots=True, init=False)
class ResponseStarted:
    """(edge) The connector answered a stream with a response head."""

    stream_id: int
    head: ResponseHead

    def __init__(self, stream_id: int, head: ResponseHead) -> None:
        self.stream_id = stream_id
        self.head = head


@dataclass(slots=True, init=False)
class DataReceived:
    """Body bytes; `flow_length` must be acknowledged once they are passed on."""

    stream_id: int
    data: bytes
    flow_length: int

    def __init__(self, stream_id: int, data: bytes, flow_length: int) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow_length = flow_length


@dataclass(slots=True, init=False)
class TrailersReceived:
    """Trailing headers; the stream's body is complete."""

    stream_id: int
    headers: Headers

    def __init__(self, stream_id: int, headers: Headers) -> None:
        self.stream_id = stream_id
        self.headers = headers


@dataclass(slots=True, init=False)
class StreamEnded:
    stream_id: int

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


@dataclass(slots=True, init=False)
class StreamReset:
    stream_id: int
    error_code: int

    def __init__(self, stream_id: int, error_code: int) -> None:
        self.stream_id = stream_id
        self.error_code = error_code


@dataclass(slots=True, init=False)
class WindowOpened:
    """Send credit grew; `stream_id` 0 means the whole connection."""

    stream_id: int

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


@dataclass(slots=True, init=False)
class PingAcked:
    payload: bytes

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


@dataclass(slots=True)
class DrainRequested:
    """The peer is draining: open no new streams, finish the open ones."""


@dataclass(slots=True, init=False)
class GoAway:
    """The peer closed the session (GOAWAY)."""

    error_code: int
    last_stream_id: int

    def __init__(self, error_code: int, last_stream_id: int) -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id


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
