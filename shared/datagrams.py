"""UDP datagrams inside a tunnel stream (kind `udp`), sans-IO: each datagram is its length
(u16, network byte order) then its bytes, so boundaries survive the byte stream and a
datagram arrives whole or not at all. One stream carries one flow (one visitor address
and port), so a slow flow never holds up another."""

from __future__ import annotations

import struct

from shared.errors import ProtocolError

MAX_DATAGRAM = 65535 - 8 - 20  # the largest UDP payload over IPv4
_LENGTH = struct.Struct("!H")


def pack(datagram: bytes) -> bytes:
    if len(datagram) > MAX_DATAGRAM:
        raise ProtocolError(f"a datagram of {len(datagram)} bytes (limit {MAX_DATAGRAM})")
    return _LENGTH.pack(len(datagram)) + datagram


class DatagramReader:
    """Collects stream bytes; `feed` returns the datagrams they complete. Holds at most one
    datagram cut short (≤ 64 KiB)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        datagrams, pos = [], 0
        while len(buffer) - pos >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, pos)
            if length > MAX_DATAGRAM:
                raise ProtocolError(f"a datagram of {length} bytes (limit {MAX_DATAGRAM})")
            end = pos + _LENGTH.size + length
            if end > len(buffer):
                break
            datagrams.append(bytes(buffer[pos + _LENGTH.size : end]))
            pos = end
        del buffer[:pos]
        return datagrams

    @property
    def pending(self) -> int:
        """Bytes of a datagram not yet complete."""
        return len(self._buffer)
