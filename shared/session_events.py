"""What a tunnel session reports to its driver (`shared.transport`): one event per frame that
matters, produced by `shared.protocol.TunnelSession.receive_data`."""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import Headers, RequestHead, ResponseHead


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """(connector) The edge opened a stream carrying a request."""

    stream_id: int
    head: RequestHead
    kind: bytes  # `shared.protocol.STREAM_KINDS`


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
