"""The SOCKS5 server core of `burrow access socks`, against socksio's client (issue 17)."""

from __future__ import annotations

import pytest
from socksio.socks5 import (
    SOCKS5AuthMethod,
    SOCKS5AuthMethodsRequest,
    SOCKS5Command,
    SOCKS5CommandRequest,
    SOCKS5Connection,
    SOCKS5ReplyCode,
)

from connector.access.socks5 import Request, Socks5Server, pack_datagram, parse_datagram
from shared.errors import ProtocolError


def client_bytes(command: SOCKS5Command, host: str, port: int) -> tuple[SOCKS5Connection, bytes, bytes]:
    client = SOCKS5Connection()
    client.send(SOCKS5AuthMethodsRequest([SOCKS5AuthMethod.USERNAME_PASSWORD, SOCKS5AuthMethod.NO_AUTH_REQUIRED]))
    greeting = client.data_to_send()
    client.receive_data(b"\x05\x00")
    client.send(SOCKS5CommandRequest.from_address(command, (host, port)))
    return client, greeting, client.data_to_send()


@pytest.mark.parametrize("host", ["198.18.5.10", "2001:db8::10", "printer.office.test"])
def test_a_request_byte_by_byte_then_the_reply_socksio_reads(host: str) -> None:
    client, greeting, request = client_bytes(SOCKS5Command.CONNECT, host, 8080)
    server = Socks5Server()
    parsed = None
    for i, byte in enumerate(greeting + request):
        assert parsed is None, i
        parsed = server.receive_data(bytes([byte]))
    assert parsed == Request(SOCKS5Command.CONNECT, host, 8080)
    assert bytes(server.out) == b"\x05\x00"  # no authentication chosen
    reply = client.receive_data(server.reply(3, "198.18.6.2", 1080))
    assert (reply.reply_code, reply.addr, reply.port) == (SOCKS5ReplyCode.NETWORK_UNREACHABLE, "198.18.6.2", 1080)


def test_bytes_after_the_request_are_kept_and_unknown_commands_are_reported() -> None:
    _, greeting, request = client_bytes(SOCKS5Command.BIND, "198.18.5.10", 1)
    server = Socks5Server()
    assert server.receive_data(greeting + request + b"GET /") == Request(SOCKS5Command.BIND, "198.18.5.10", 1)
    assert server.leftover == b"GET /"
    assert Socks5Server().receive_data(greeting + b"\x05\x09\x00\x01\xc6\x12\x05\x0a\x00\x50").command is None


def test_clients_we_cannot_serve_are_refused() -> None:
    server = Socks5Server()
    with pytest.raises(ProtocolError, match="no authentication"):
        server.receive_data(b"\x05\x01\x02")
    assert bytes(server.out) == b"\x05\xff"
    with pytest.raises(ProtocolError, match="not a SOCKS5 client"):
        Socks5Server().receive_data(b"\x04\x01")
    with pytest.raises(ProtocolError, match="address type"):
        Socks5Server().receive_data(b"\x05\x01\x00\x05\x01\x00\x07")
    with pytest.raises(ProtocolError, match="too long"):
        Socks5Server().receive_data(b"\x05\x01\x00" + b"\x05\x01\x00\x03" + b"\xff" + b"a" * 300)


def test_udp_datagrams_round_trip_and_fragments_are_refused() -> None:
    for host in ("198.18.5.53", "2001:db8::53", "ns.office.test"):
        assert parse_datagram(pack_datagram(host, 53, b"query")) == (host, 53, b"query")
    with pytest.raises(ProtocolError, match="fragmented"):
        parse_datagram(b"\x00\x00\x01\x01\xc6\x12\x05\x35\x00\x35x")
    with pytest.raises(ProtocolError, match="truncated"):
        parse_datagram(b"\x00\x00\x00\x01\xc6\x12")
