"""Registration, the first phase of a tunnel connection (sans-IO).

The connector sends `MAGIC` and one framed JSON `register` message; the edge
answers with one framed `registered` or `rejected`. Then the multiplexed
session (`shared.protocol`) begins. See docs/protocol.md.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass

from shared.errors import ProtocolError

PROTOCOL_VERSION = 2
MAGIC = b"BURROW-TUNNEL/2\n"
_MAGIC_NAME = b"BURROW-TUNNEL/"  # the part every protocol version shares
MAX_REGISTRATION_BYTES = 16 * 1024
FEATURE_PORTS = "ports"  # the connector serves `tcp` and `udp` streams (public ports)
FEATURE_STATUS = "status"  # the connector answers `status` streams (its origin pools' state)
FEATURE_EDGES = "edges"  # the connector takes `edges` streams (the live edges changed; `shared.edge_news`)
WARP_ROUTING = "warp-routing"  # the edge's name for `warp_routing: true`: the connector serves `private` streams
MAX_FEATURES = 32
MAX_EDGES = 16  # live edges one `registered` reply may list
_LENGTH = struct.Struct("!I")


@dataclass(frozen=True)
class Register:
    """The connector's first message on a new tunnel connection."""

    tunnel_id: str
    secret: bytes
    connector_id: str
    conn_index: int
    client_version: str
    warp_routing: bool = False  # config.yml `warp-routing.enabled`: the connector serves private-network flows
    features: frozenset[str] = frozenset()  # what the connector serves beyond HTTP and upgrades

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
                "features": sorted(self.features),
            }
            | ({"warp_routing": True} if self.warp_routing else {})
        )


@dataclass(frozen=True)
class Registered:
    """The edge accepted the connection."""

    connection_id: str
    edge_id: str
    edges: tuple[str, ...] = ()  # HOST:PORT of every live edge sharing the registry (this one first)

    def to_wire(self) -> bytes:
        message = {"type": "registered", "connection_id": self.connection_id, "edge_id": self.edge_id}
        if self.edges:
            message["edges"] = list(self.edges)
        return frame(message)


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
            received = bytes(self._buffer[: len(MAGIC)])
            if not MAGIC.startswith(received):
                if len(received) < len(MAGIC) and received.startswith(_MAGIC_NAME):
                    return None, b""  # another version: wait for all of it, to name it
                raise ProtocolError(_wrong_magic(received))
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


def _features(raw: object) -> frozenset[str]:
    """The connector's feature names (absent from connectors older than the field: none)."""
    if not isinstance(raw, list) or len(raw) > MAX_FEATURES or not all(isinstance(name, str) for name in raw):
        raise ValueError(f"features must be a list of at most {MAX_FEATURES} names")
    return frozenset(raw)


def _wrong_magic(received: bytes) -> str:
    if received.startswith(_MAGIC_NAME) and received.endswith(b"\n"):
        version = received[len(_MAGIC_NAME) : -1].decode("ascii", "replace")
        return (
            f"unsupported tunnel protocol version {version} (this edge speaks {PROTOCOL_VERSION}):"
            " upgrade the connector"
        )
    return "not a Burrow tunnel client, or an unsupported protocol version"


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
                warp_routing=message.get("warp_routing") is True,
                features=_features(message.get("features", [])),
            )
        if kind == "registered":
            edges = message.get("edges", [])
            if not isinstance(edges, list) or len(edges) > MAX_EDGES or not all(isinstance(e, str) for e in edges):
                raise ProtocolError(f"edges must be a list of at most {MAX_EDGES} HOST:PORT strings")
            return Registered(str(message["connection_id"]), str(message["edge_id"]), tuple(edges))
        if kind == "rejected":
            return Rejected(str(message["reason"]), bool(message["retryable"]))
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:  # inf, deep nesting
        raise ProtocolError(f"malformed registration message: {exc}") from exc
    raise ProtocolError(f"unknown registration message type {kind!r}")
