"""The sans-IO HTTP CONNECT and SOCKS5 cores, byte by byte (real proxies: tests/e2e/test_egress_proxy.py)."""

import pytest

from connector.egress.errors import ProxyAuthError, ProxyRefused
from connector.egress.http_connect import MAX_RESPONSE_HEAD, HttpConnect
from connector.egress.socks5 import Socks5Connect
from shared.errors import ProtocolError


def test_connect_request_carries_basic_auth():
    core = HttpConnect("edge.example.com", 7844, ("alice", "pw"))
    request = core.request()
    assert request.startswith(b"CONNECT edge.example.com:7844 HTTP/1.1\r\n")
    assert b"proxy-authorization: Basic YWxpY2U6cHc=\r\n" in request


def test_connect_opens_on_2xx_fed_in_pieces():
    core = HttpConnect("2001:db8::1", 7844)
    assert b"CONNECT [2001:db8::1]:7844 " in core.request()
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 Connection established\r\nProxy-agent: x\r\n\r\n"
    pieces = [answer[i:i + 7] for i in range(0, len(answer), 7)]
    assert [core.receive_data(piece) for piece in pieces][-1] is True
    assert core.leftover == b""


@pytest.mark.parametrize("credentials, says", [(("a", "b"), "rejected the user name or password"), (None, "requires a user name")])
def test_connect_407_is_an_auth_error(credentials, says):
    core = HttpConnect("h", 1, credentials, "proxy http://a:***@p:1")
    core.request()
    with pytest.raises(ProxyAuthError, match=says):
        core.receive_data(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")


def test_connect_other_refusals_and_garbage():
    core = HttpConnect("h", 1)
    core.request()
    with pytest.raises(ProxyRefused, match="403 Forbidden"):
        core.receive_data(b"HTTP/1.1 403 Forbidden\r\n\r\n")
    core = HttpConnect("h", 1)
    core.request()
    with pytest.raises(ProtocolError):
        core.receive_data(b"SSH-2.0-OpenSSH\r\n\r\n")
    core = HttpConnect("h", 1)
    core.request()
    with pytest.raises(ProtocolError):  # a head that never ends is cut at MAX_RESPONSE_HEAD
        core.receive_data(b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * MAX_RESPONSE_HEAD)
    core = HttpConnect("h", 1)
    core.request()
    with pytest.raises(ProtocolError, match="closed"):
        core.receive_data(b"")


def test_socks5_no_auth_connect_to_an_address():
    core = Socks5Connect("198.18.0.1", 7844)
    assert core.request() == b"\x05\x01\x00"
    assert core.receive_data(b"\x05\x00") is False
    assert core.data_to_send() == b"\x05\x01\x00\x01" + bytes([198, 18, 0, 1]) + (7844).to_bytes(2, "big")
    reply = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"
    assert core.receive_data(reply[:6]) is False  # a reply in pieces waits for the rest
    assert core.receive_data(reply[6:] + b"tls") is True
    assert core.leftover == b"tls"


def test_socks5_user_password_and_domain_target():
    core = Socks5Connect("edge.example.com", 443, ("u", "p"))
    assert core.request() == b"\x05\x02\x00\x02"
    core.receive_data(b"\x05\x02")
    assert core.data_to_send() == b"\x01\x01u\x01p"
    core.receive_data(b"\x01\x00")
    assert core.data_to_send() == b"\x05\x01\x00\x03\x10edge.example.com\x01\xbb"
    assert core.receive_data(b"\x05\x00\x00\x03\x04edge\x01\xbb") is True


def test_socks5_refusals():
    core = Socks5Connect("198.18.0.1", 1, ("u", "bad"))
    core.request()
    core.receive_data(b"\x05\x02")
    with pytest.raises(ProxyAuthError, match="rejected the user name or password"):
        core.receive_data(b"\x01\x01")
    core = Socks5Connect("198.18.0.1", 1)
    core.request()
    with pytest.raises(ProxyAuthError, match="requires a user name"):
        core.receive_data(b"\x05\x02")
    core = Socks5Connect("198.18.0.1", 1)
    core.request()
    with pytest.raises(ProxyAuthError, match="none of"):
        core.receive_data(b"\x05\xff")
    core = Socks5Connect("198.18.0.1", 1)
    core.request()
    core.receive_data(b"\x05\x00")
    with pytest.raises(ProxyRefused, match="connection refused"):
        core.receive_data(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
    with pytest.raises(ProtocolError, match="closed"):
        Socks5Connect("198.18.0.1", 1).receive_data(b"")


def test_connect_answer_after_1xx_in_one_piece():
    core = HttpConnect("h", 1)
    core.request()
    assert core.receive_data(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n") is True
