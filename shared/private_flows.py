"""Private-network flows (`route ip`, `access socks`), sans-IO: what the three sides agree on.

A flow is one TCP connection or one UDP destination that `burrow access socks`
carries to an address on a connector's network. The client asks the edge with an
HTTP/1.1 upgrade to `PRIVATE_UPGRADE` naming the target in `TARGET_HEADER`; the
edge opens a tunnel stream of kind `private` (`shared.protocol.KIND_PRIVATE`)
whose head has the method `TCP` or `UDP` and the authority `HOST:PORT`; the
connector dials and answers 200 (then bytes flow) or a refusal. Every refusal,
wherever it happens, carries the SOCKS5 reply code for the client in `REPLY_HEADER`.

UDP datagrams cross the byte stream as a 2-byte length and the datagram.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from shared.errors import ConfigError, ProtocolError

PRIVATE_UPGRADE = b"burrow-private"
TARGET_HEADER = b"burrow-private-target"  # "tcp HOST:PORT" or "udp HOST:PORT" (client → edge)
REPLY_HEADER = b"burrow-socks-reply"  # the SOCKS5 reply code of a refusal, in decimal
NETWORKS_HEADER = b"burrow-private-networks"  # edge → connector: the CIDRs this flow may reach, comma-separated
SUBJECT_HEADER = b"burrow-private-subject"  # edge → connector: who asked ("account" or a service token's name)
PROTOCOLS = ("tcp", "udp")
MAX_HOSTNAME = 253
MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4
_LENGTH = struct.Struct("!H")

# SOCKS5 reply codes (RFC 1928 §6), as every side refuses a flow with one of them.
SUCCEEDED = 0
GENERAL_FAILURE = 1
NOT_ALLOWED = 2  # authentication failed, or a policy does not allow the credential
NETWORK_UNREACHABLE = 3  # no route of the account covers the address, or its tunnel has no warp-routing connector
HOST_UNREACHABLE = 4  # the connector could not resolve or reach the host
CONNECTION_REFUSED = 5
TTL_EXPIRED = 6  # the connector's dial timed out
COMMAND_NOT_SUPPORTED = 7
ADDRESS_TYPE_NOT_SUPPORTED = 8  # a hostname while the connector does not resolve names

SOCKS_REPLIES = (  # names of the codes above, for logs and metrics
    "succeeded", "general_failure", "not_allowed", "network_unreachable", "host_unreachable",
    "connection_refused", "ttl_expired", "command_not_supported", "address_type_not_supported",
)
REPLY_STATUS = {  # the HTTP status a refusal travels with, by reply code
    GENERAL_FAILURE: 502, NOT_ALLOWED: 403, NETWORK_UNREACHABLE: 502, HOST_UNREACHABLE: 502,
    CONNECTION_REFUSED: 502, TTL_EXPIRED: 504, COMMAND_NOT_SUPPORTED: 400, ADDRESS_TYPE_NOT_SUPPORTED: 400,
}  # fmt: skip


@dataclass(frozen=True)
class Target:
    """Where a flow goes: `protocol` tcp or udp, `host` an IP address or (resolved by the connector) a name."""

    protocol: str
    host: str
    port: int

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The host as an address, None for a name."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def header(self) -> bytes:
        return f"{self.protocol} {self.authority}".encode()

    @property
    def method(self) -> bytes:
        """The tunnel stream's method."""
        return self.protocol.upper().encode()


def parse_authority(protocol: str, authority: str) -> Target:
    """`HOST:PORT` (`[v6]:PORT` for IPv6) as a target; ConfigError when malformed."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown flow protocol {protocol!r}")
    host, sep, port = authority.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"invalid flow target {authority!r}: expected HOST:PORT")
    if len(host) > MAX_HOSTNAME or not all(c.isalnum() or c in "-._:" for c in host):
        raise ConfigError(f"invalid flow target host {host!r}")
    return Target(protocol, host, int(port))


def parse_target_header(value: bytes | None) -> Target:
    """The client's `Burrow-Private-Target`."""
    if not value:
        raise ConfigError(f"missing {TARGET_HEADER.decode()} header")
    protocol, _, authority = value.decode("latin-1").partition(" ")
    return parse_authority(protocol.lower(), authority.strip())


def reply_code(headers, default: int = GENERAL_FAILURE) -> int:
    """The SOCKS5 reply code a refusal's headers carry."""
    for name, value in headers:
        if name == REPLY_HEADER and value.isdigit() and int(value) in REPLY_STATUS:
            return int(value)
    return default


def frame_datagram(payload: bytes) -> bytes:
    if len(payload) > MAX_DATAGRAM:
        raise ProtocolError(f"a datagram of {len(payload)} bytes (limit {MAX_DATAGRAM})")
    return _LENGTH.pack(len(payload)) + payload


class DatagramReader:
    """Length-prefixed datagrams back out of a byte stream."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        datagrams = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > MAX_DATAGRAM:
                raise ProtocolError(f"a datagram of {length} bytes (limit {MAX_DATAGRAM})")
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            datagrams.append(bytes(self._buffer[_LENGTH.size : end]))
            del self._buffer[:end]
        return datagrams
