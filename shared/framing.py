"""The tunnel session's frame codec (tunnel protocol version 2), sans-IO.

    frame   = header payload
    header  = length:u32 type:u8 flags:u8 stream:u32   (network byte order, 10 bytes)
    fields  = count:u16 count×(length:u32) then the fields' bytes back to back

Heads (REQUEST, RESPONSE, TRAILERS) are `fields`; see docs/protocol.md for
the full layout. Decoders take the received bytes with the payload's bounds,
so nothing is copied before the fields are sliced out.
"""

from __future__ import annotations

import struct
from itertools import chain

from shared.errors import ProtocolError
from shared.events import Headers

HEADER = struct.Struct("!IBBI")
HEADER_SIZE = HEADER.size

# Frame types. DATA..RESET concern one stream (id > 0), PING..GOAWAY the session (id 0).
DATA, REQUEST, RESPONSE, TRAILERS, RESET, WINDOW, PING, PING_ACK, GOAWAY = range(9)
TYPE_NAMES = ("DATA", "REQUEST", "RESPONSE", "TRAILERS", "RESET", "WINDOW", "PING", "PING_ACK", "GOAWAY")
END_STREAM = 0x1  # on DATA, REQUEST, RESPONSE and TRAILERS only

MAX_FRAME_SIZE = 64 * 1024  # DATA payload
MAX_HEADER_LIST_SIZE = 256 * 1024  # a head's payload
MAX_STREAM_ID = 2**31 - 1
MAX_WINDOW = 2**31 - 1

# The largest payload each frame type may announce, indexed by type; checked on the header alone.
PAYLOAD_LIMITS = (MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_SIZE, 4, 4, 8, 8, 8)

U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
U32_PAIR = struct.Struct("!II")

_REQUEST_FIELDS = 5  # method, scheme, authority, target, kind; then name, value pairs
_MAX_FIELDS = 0xFFFF
_CACHED_COUNTS = 256  # structs for larger heads are built per use, so a peer cannot grow the cache
_LENGTHS: dict[int, struct.Struct] = {}


def _lengths(count: int) -> struct.Struct:
    """The struct `count:u16 count×u32`."""
    layout = _LENGTHS.get(count)
    if layout is None:
        layout = struct.Struct(f"!H{count}I")
        if count <= _CACHED_COUNTS:
            _LENGTHS[count] = layout
    return layout


# --- Heads ----------------------------------------------------------------------


def _pack_fields(prefix: bytes, fields: list[bytes]) -> bytes:
    count = len(fields)
    if count > _MAX_FIELDS:
        raise ProtocolError(f"a head of {count} fields exceeds the tunnel limit")
    payload = b"".join([prefix, _lengths(count).pack(count, *map(len, fields)), *fields])
    if len(payload) > MAX_HEADER_LIST_SIZE:
        raise ProtocolError(f"a head of {len(payload)} bytes exceeds the tunnel limit of {MAX_HEADER_LIST_SIZE}")
    return payload


def _unpack_fields(buf: bytes, start: int, end: int) -> list[bytes]:
    if end - start < 2:
        raise ProtocolError("malformed head: no field count")
    count: int = U16.unpack_from(buf, start)[0]
    pos = start + 2 + 4 * count
    if pos > end:
        raise ProtocolError("malformed head: field lengths cut short")
    lengths: tuple[int, ...] = _lengths(count).unpack_from(buf, start)
    if pos + sum(lengths) - count != end:  # lengths[0] is the count itself
        raise ProtocolError("malformed head: field lengths do not add up to the payload")
    fields = []
    length: int
    for length in lengths[1:]:
        fields.append(buf[pos : pos + length])
        pos += length
    return fields


def _pairs(fields: list[bytes], first: int) -> Headers:
    if (len(fields) - first) % 2:
        raise ProtocolError("malformed head: a header name without a value")
    return tuple(zip(fields[first::2], fields[first + 1 :: 2]))


def pack_request(method: bytes, scheme: bytes, authority: bytes, target: bytes, kind: bytes, headers: Headers) -> bytes:
    return _pack_fields(b"", [method, scheme, authority, target, kind, *chain.from_iterable(headers)])


def unpack_request(buf: bytes, start: int, end: int) -> tuple[bytes, bytes, bytes, bytes, bytes, Headers]:
    """(method, scheme, authority, target, kind, headers)."""
    fields = _unpack_fields(buf, start, end)
    if len(fields) < _REQUEST_FIELDS:
        raise ProtocolError("malformed head: a request needs method, scheme, authority, target and kind")
    method, scheme, authority, target, kind = fields[:_REQUEST_FIELDS]
    return method, scheme, authority, target, kind, _pairs(fields, _REQUEST_FIELDS)


def pack_response(status: int, headers: Headers) -> bytes:
    if not 100 <= status <= 999:
        raise ProtocolError(f"cannot send status {status}")
    return _pack_fields(U16.pack(status), list(chain.from_iterable(headers)))


def unpack_response(buf: bytes, start: int, end: int) -> tuple[int, Headers]:
    """(status, headers)."""
    if end - start < 2:
        raise ProtocolError("malformed head: no status")
    status: int = U16.unpack_from(buf, start)[0]
    if not 100 <= status <= 999:
        raise ProtocolError(f"response with status {status}")
    return status, _pairs(_unpack_fields(buf, start + 2, end), 0)


def pack_trailers(headers: Headers) -> bytes:
    return _pack_fields(b"", list(chain.from_iterable(headers)))


def unpack_trailers(buf: bytes, start: int, end: int) -> Headers:
    return _pairs(_unpack_fields(buf, start, end), 0)
