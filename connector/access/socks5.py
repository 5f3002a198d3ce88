"""The server side of SOCKS5 (RFC 1928), sans-IO: the greeting, one request, the reply, and the
header of UDP datagrams. Wire values and address coding come from socksio (whose state
machine is the client's); `connector.access.socks` is the trio shell.

Only "no authentication" is offered: the proxy listens on loopback, and the
credential that matters is the one it presents to the edge.
"""

from __future__ import annotations

from dataclasses import dataclass

from socksio.socks5 import SOCKS5AType, SOCKS5AuthMethod, SOCKS5Command, SOCKS5ReplyCode
from socksio.utils import AddressType, decode_address, encode_address

from shared.errors import ProtocolError

VERSION = b"\x05"
MAX_REQUEST = 4 + 1 + 255 + 2  # the longest request: a 255-byte domain name
_ADDRESS_SIZES = {SOCKS5AType.IPV4_ADDRESS: 4, SOCKS5AType.IPV6_ADDRESS: 16}


@dataclass(frozen=True)
class Request:
    command: SOCKS5Command
    host: str
    port: int


def _address(data: bytes | bytearray, at: int) -> tuple[str, int, int] | None:
    """(host, port, end) of an ATYP ADDR PORT field starting at `at`; None while incomplete."""
    if len(data) <= at:
        return None
    try:
        atype = SOCKS5AType(bytes(data[at : at + 1]))
    except ValueError:
        raise ProtocolError(f"unknown SOCKS5 address type {data[at]}") from None
    start = at + 1
    if atype == SOCKS5AType.DOMAIN_NAME:
        if len(data) <= start:
            return None
        size, start = data[start], start + 1
    else:
        size = _ADDRESS_SIZES[atype]
    end = start + size + 2
    if len(data) < end:
        return None
    try:
        host = decode_address(AddressType.from_socks5_atype(atype), bytes(data[start : start + size]))
    except UnicodeDecodeError:
        raise ProtocolError("a SOCKS5 domain name that is not text") from None
    return host, int.from_bytes(data[end - 2 : end], "big"), end


def pack_address(host: str, port: int) -> bytes:
    """ATYP ADDR PORT for `host` (an address or a name)."""
    kind, encoded = encode_address(host)
    atype = SOCKS5AType.from_atype(kind)
    if atype == SOCKS5AType.DOMAIN_NAME:
        encoded = len(encoded).to_bytes(1, "big") + encoded
    return atype + encoded + port.to_bytes(2, "big")


class Socks5Server:
    """One SOCKS5 control connection: `receive_data` until the request is complete, then `reply`."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._greeted = False
        self.out = bytearray()  # bytes to send to the client

    def receive_data(self, data: bytes) -> Request | None:
        """Feed bytes from the client; the request once it is complete."""
        self._buffer += data
        if not self._greeted:
            if len(self._buffer) < 2:
                return None
            if self._buffer[:1] != VERSION:
                raise ProtocolError("not a SOCKS5 client")
            count = self._buffer[1]
            if len(self._buffer) < 2 + count:
                return None
            methods = {bytes([m]) for m in self._buffer[2 : 2 + count]}
            del self._buffer[: 2 + count]
            if SOCKS5AuthMethod.NO_AUTH_REQUIRED not in methods:
                self.out += VERSION + SOCKS5AuthMethod.NO_ACCEPTABLE_METHODS
                raise ProtocolError("the SOCKS5 client does not offer 'no authentication'")
            self.out += VERSION + SOCKS5AuthMethod.NO_AUTH_REQUIRED
            self._greeted = True
        if len(self._buffer) > MAX_REQUEST:
            raise ProtocolError("SOCKS5 request too long")
        if len(self._buffer) < 4:
            return None
        if self._buffer[:1] != VERSION:
            raise ProtocolError("not a SOCKS5 request")
        parsed = _address(self._buffer, 3)
        if parsed is None:
            return None
        host, port, end = parsed
        try:
            command = SOCKS5Command(bytes(self._buffer[1:2]))
        except ValueError:
            command = None
        del self._buffer[:end]
        return Request(command, host, port)

    def reply(self, code: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
        """The reply to the request (`code` a SOCKS5 reply code), with the bound address."""
        return VERSION + SOCKS5ReplyCode(bytes([code])) + b"\x00" + pack_address(host, port)

    @property
    def leftover(self) -> bytes:
        """Bytes the client sent after its request (its first payload bytes)."""
        return bytes(self._buffer)


def parse_datagram(data: bytes) -> tuple[str, int, bytes]:
    """(destination host, port, payload) of a UDP ASSOCIATE datagram; fragments are refused."""
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise ProtocolError("not a SOCKS5 UDP datagram")
    if data[2] != 0:
        raise ProtocolError("fragmented SOCKS5 datagrams are not supported")
    parsed = _address(data, 3)
    if parsed is None:
        raise ProtocolError("a truncated SOCKS5 UDP header")
    host, port, end = parsed
    return host, port, data[end:]


def pack_datagram(host: str, port: int, payload: bytes) -> bytes:
    """A UDP ASSOCIATE datagram from `host:port` back to the client."""
    return b"\x00\x00\x00" + pack_address(host, port) + payload
