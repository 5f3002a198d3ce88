"""Reply to a UDP query from the address it was sent to, as BIND and Knot do (Linux). Pure.

A UDP socket bound to a wildcard address sends from whatever address routing
picks, which on a host with several addresses need not be the one the client
asked; resolvers drop such replies. With IP_PKTINFO / IPV6_RECVPKTINFO each
received datagram carries its destination address, and the reply names it as
its source. A dual-stack IPv6 socket reports IPv4 queries as v4-mapped
addresses, and Linux sends from those too.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct

# Linux values, for Pythons whose socket module lacks the names (IP_PKTINFO before 3.12).
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)

IN_PKTINFO = struct.Struct("=i4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
IN6_PKTINFO = struct.Struct("=16si")  # ipi6_addr, ipi6_ifindex
ANCILLARY_SIZE = socket.CMSG_SPACE(IN6_PKTINFO.size)  # room for either

Ancillary = list[tuple[int, int, bytes]]


def receive_option(family: int) -> tuple[int, int]:
    """The (level, option) that, set to 1, has the kernel report each datagram's destination address."""
    return (socket.IPPROTO_IPV6, IPV6_RECVPKTINFO) if family == socket.AF_INET6 else (socket.IPPROTO_IP, IP_PKTINFO)


def reply_source(received: Ancillary) -> Ancillary:
    """The control message that sends a reply from the received datagram's destination; [] if it has none.

    The interface is left to routing (index 0), so the reply takes the route back to
    the client, except for an IPv6 link-local address, which means something only on its link.
    The list returned is shared between calls: not to be modified.
    """
    for message in received:
        source = _source(*message)
        if source:
            return source
    return []


@functools.lru_cache(maxsize=256)  # a host has few addresses: one entry per (address, interface)
def _source(level: int, kind: int, data: bytes) -> Ancillary:
    if (level, kind) == (socket.IPPROTO_IP, IP_PKTINFO) and len(data) >= IN_PKTINFO.size:
        _, local, _ = IN_PKTINFO.unpack_from(data)  # ipi_spec_dst: the destination, or for a broadcast the interface's own
        return [(socket.IPPROTO_IP, IP_PKTINFO, IN_PKTINFO.pack(0, local, bytes(4)))]
    if (level, kind) == (socket.IPPROTO_IPV6, IPV6_PKTINFO) and len(data) >= IN6_PKTINFO.size:
        address, index = IN6_PKTINFO.unpack_from(data)
        index = index if ipaddress.IPv6Address(address).is_link_local else 0
        return [(socket.IPPROTO_IPV6, IPV6_PKTINFO, IN6_PKTINFO.pack(address, index))]
    return []
