"""connector/origins/proxy_protocol.py: the byte layouts of HAProxy's PROXY protocol spec
(https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt), versions 1 and 2."""

from __future__ import annotations

import pytest

from connector.origins.proxy_protocol import header

SIGNATURE = bytes.fromhex("0D0A0D0A000D0A515549540A")  # section 2.2


@pytest.mark.parametrize(
    "source, destination, expected",
    [
        (("127.0.0.2", 51000), ("127.0.0.1", 8080), b"PROXY TCP4 127.0.0.2 127.0.0.1 51000 8080\r\n"),
        (("2001:db8::1", 443), ("::1", 80), b"PROXY TCP6 2001:db8::1 ::1 443 80\r\n"),
        (("::ffff:192.0.2.7", 1), ("192.0.2.1", 2), b"PROXY TCP4 192.0.2.7 192.0.2.1 1 2\r\n"),  # mapped: unmapped
        (("192.0.2.7", 1), ("::1", 2), b"PROXY TCP6 ::ffff:c000:207 ::1 1 2\r\n"),  # mixed: both IPv6
        (("192.0.2.7", 1), None, b"PROXY TCP4 192.0.2.7 0.0.0.0 1 0\r\n"),  # e.g. a unix-socket origin
        (("fe80::1%eth0", 5), ("fe80::2", 6), b"PROXY TCP6 fe80::1 fe80::2 5 6\r\n"),
        (None, ("127.0.0.1", 80), b"PROXY UNKNOWN\r\n"),
        (("not-an-ip", 1), ("127.0.0.1", 80), b"PROXY UNKNOWN\r\n"),
    ],
)
def test_v1(source, destination, expected):
    assert header("v1", source, destination) == expected
    assert len(expected) <= 107  # the spec's longest line


def test_v1_longest_line_is_within_the_spec():
    line = header("v1", ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535), ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535))
    assert len(line) == 104 and line.endswith(b"\r\n")


def test_v2_ipv4():
    data = header("v2", ("127.0.0.2", 51000), ("127.0.0.1", 8080))
    assert data[:12] == SIGNATURE
    assert data[12] == 0x21  # version 2, PROXY
    assert data[13] == 0x11  # AF_INET, STREAM
    assert data[14:16] == (12).to_bytes(2, "big")
    assert data[16:] == bytes([127, 0, 0, 2, 127, 0, 0, 1]) + (51000).to_bytes(2, "big") + (8080).to_bytes(2, "big")


def test_v2_ipv6():
    data = header("v2", ("2001:db8::1", 443), ("::1", 80))
    assert data[12:16] == bytes([0x21, 0x21]) + (36).to_bytes(2, "big")  # AF_INET6, STREAM; 36 address bytes
    assert data[16:32] == bytes.fromhex("20010db8000000000000000000000001")
    assert data[32:48] == bytes(15) + b"\x01"
    assert data[48:] == (443).to_bytes(2, "big") + (80).to_bytes(2, "big")


def test_v2_without_a_source_is_local():
    assert header("v2", None, ("127.0.0.1", 80)) == SIGNATURE + bytes([0x20, 0x00, 0x00, 0x00])
