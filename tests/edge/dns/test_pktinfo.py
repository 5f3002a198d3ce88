"""`pktinfo`: the control message that sends a UDP reply from the query's destination address.
(The multi-homed behaviour itself: tests/e2e/test_dns_multihomed.py.)"""

from __future__ import annotations

import socket

import pytest

from edge.dns import pktinfo


def v4(index: int, local: str, destination: str) -> tuple[int, int, bytes]:
    data = pktinfo.IN_PKTINFO.pack(index, socket.inet_aton(local), socket.inet_aton(destination))
    return socket.IPPROTO_IP, pktinfo.IP_PKTINFO, data


def v6(address: str, index: int) -> tuple[int, int, bytes]:
    data = pktinfo.IN6_PKTINFO.pack(socket.inet_pton(socket.AF_INET6, address), index)
    return socket.IPPROTO_IPV6, pktinfo.IPV6_PKTINFO, data


def test_ipv4_reply_leaves_from_the_local_address_on_any_interface():
    (reply,) = pktinfo.reply_source([v4(3, "198.18.2.1", "198.18.2.1")])
    assert reply == v4(0, "198.18.2.1", "0.0.0.0")


@pytest.mark.parametrize("address", ["2001:db8:2::1", "::ffff:198.18.2.1"], ids=["ipv6", "v4-mapped"])
def test_ipv6_reply_leaves_from_the_destination_on_any_interface(address):
    assert pktinfo.reply_source([v6(address, 3)]) == [v6(address, 0)]


def test_ipv6_link_local_keeps_its_interface():
    assert pktinfo.reply_source([v6("fe80::1", 3)]) == [v6("fe80::1", 3)]


SO_TIMESTAMP = 29  # Linux; another control message a socket may carry
SHORT = (socket.IPPROTO_IP, pktinfo.IP_PKTINFO, b"\0")


@pytest.mark.parametrize("received", [[], [(socket.SOL_SOCKET, SO_TIMESTAMP, b"\0" * 16)], [SHORT]], ids=["none", "other", "short"])
def test_without_pktinfo_routing_picks_the_source(received):
    assert pktinfo.reply_source(received) == []


def test_receive_option_by_family():
    assert pktinfo.receive_option(socket.AF_INET) == (socket.IPPROTO_IP, pktinfo.IP_PKTINFO)
    assert pktinfo.receive_option(socket.AF_INET6) == (socket.IPPROTO_IPV6, pktinfo.IPV6_RECVPKTINFO)
