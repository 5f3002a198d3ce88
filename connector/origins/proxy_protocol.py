"""PROXY protocol headers, versions 1 (text) and 2 (binary), as HAProxy's spec lays them out.

Sans-IO: `header()` gives the bytes an origin connection starts with, so that the
origin sees the visitor's address and port instead of the connector's.
"""

from __future__ import annotations

import ipaddress
import struct

Address = tuple[str, int]  # (IP, port)
IP = ipaddress.IPv4Address | ipaddress.IPv6Address

VERSIONS = ("v1", "v2")
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_PROXY = 0x21  # version 2, command PROXY
V2_LOCAL = 0x20  # version 2, command LOCAL: no addresses, the receiver uses the connection's own
V2_TCP = {4: 0x11, 6: 0x21}  # address family and transport: TCP over IPv4 / IPv6


def header(version: str, source: Address | None, destination: Address | None) -> bytes:
    """The `version` ("v1" or "v2") header saying the connection comes from `source` to
    `destination`. Without a usable source it says "unknown" (v1 UNKNOWN, v2 LOCAL); an
    unusable destination becomes the unspecified address, port 0, of the source's family."""
    addresses = _addresses(source, destination)
    return (_v1 if version == "v1" else _v2)(addresses)


def _addresses(source: Address | None, destination: Address | None) -> tuple[IP, IP, int, int] | None:
    """Both IPs in one family (IPv4-mapped IPv6 where they differ), with their ports; None without a source."""
    src, src_port = _ip(source)
    if src is None or not 0 <= src_port <= 65535:
        return None
    dst, dst_port = _ip(destination)
    if dst is None or not 0 <= dst_port <= 65535:
        dst, dst_port = ipaddress.ip_address("0.0.0.0" if src.version == 4 else "::"), 0
    if src.version != dst.version:
        src, dst = _as_v6(src), _as_v6(dst)
    return src, dst, src_port, dst_port


def _ip(address: Address | None) -> tuple[IP | None, int]:
    if address is None:
        return None, 0
    try:
        ip = ipaddress.ip_address(address[0].split("%", 1)[0])  # no IPv6 zone: neither version carries it
    except ValueError:
        return None, 0
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip, address[1]


def _as_v6(ip: IP) -> ipaddress.IPv6Address:
    return ip if ip.version == 6 else ipaddress.IPv6Address(f"::ffff:{ip}")


def _v1(addresses: tuple[IP, IP, int, int] | None) -> bytes:
    if addresses is None:
        return b"PROXY UNKNOWN\r\n"
    src, dst, src_port, dst_port = addresses
    return f"PROXY TCP{src.version} {src} {dst} {src_port} {dst_port}\r\n".encode("ascii")


def _v2(addresses: tuple[IP, IP, int, int] | None) -> bytes:
    if addresses is None:
        return V2_SIGNATURE + bytes((V2_LOCAL, 0x00)) + struct.pack("!H", 0)
    src, dst, src_port, dst_port = addresses
    body = src.packed + dst.packed + struct.pack("!HH", src_port, dst_port)
    return V2_SIGNATURE + bytes((V2_PROXY, V2_TCP[src.version])) + struct.pack("!H", len(body)) + body
