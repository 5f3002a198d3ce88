"""The sans-IO tunnel protocol: registration framing, header packing, sessions back to back."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import protocol
from shared.errors import ProtocolError
from shared.events import RequestHead, ResponseHead

REGISTER = protocol.Register("tid", b"\x00" * 32, "cid", 2, "burrow/test")


@pytest.mark.parametrize("chunk", [1, 7, 10_000], ids=["byte-by-byte", "small", "whole"])
def test_registration_roundtrip_with_trailing_bytes(chunk):
    wire = REGISTER.to_wire() + b"trailing"
    reader = protocol.RegistrationReader(expect_magic=True)
    message = None
    for start in range(0, len(wire), chunk):
        message, rest = reader.feed(wire[start : start + chunk])
        if message is not None:
            break
    assert message == REGISTER
    assert rest + wire[start + chunk :] == b"trailing"


@pytest.mark.parametrize(
    "wire, reason",
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not a Burrow tunnel client"),
        (protocol.MAGIC + b"\xff\xff\xff\xff", "too large"),
        (protocol.MAGIC + protocol.frame({"type": "register", "version": 99}), "version"),
        (protocol.MAGIC + protocol.frame({"type": "hello"}), "unknown"),
        (protocol.MAGIC + b"\x00\x00\x00\x02{]", "malformed"),
    ],
    ids=["http", "oversized", "version", "type", "json"],
)
def test_registration_rejects_garbage(wire, reason):
    with pytest.raises(ProtocolError, match=reason):
        protocol.RegistrationReader(expect_magic=True).feed(wire)


@pytest.mark.parametrize("message", [protocol.Registered("c1", "e1"), protocol.Rejected("no", False)])
def test_edge_answers_roundtrip(message):
    assert protocol.RegistrationReader(expect_magic=False).feed(message.to_wire()) == (message, b"")


header_names = st.binary(min_size=1, max_size=20)
header_lists = st.lists(st.tuples(header_names, st.binary(max_size=50)), max_size=20)


@given(header_lists)
def test_header_packing_roundtrip(headers):
    assert protocol.unpack_headers(protocol.pack_headers(tuple(headers))) == tuple(headers)


def shuttle(a: protocol.TunnelSession, b: protocol.TunnelSession) -> list:
    """Move bytes both ways until quiet; return b's events."""
    events = []
    while True:
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            return events
        events += b.receive_data(out_a) if out_a else []
        a.receive_data(out_b) if out_b else None


def test_sessions_back_to_back_carry_request_and_response():
    edge, connector = protocol.TunnelSession("edge"), protocol.TunnelSession("connector")
    head = RequestHead(b"POST", b"/p?q=1", b"app.example.test", b"https", ((b"x-a", b"1"), (b"x-a", b"2")), True)
    stream_id = edge.open_stream(head)
    edge.send_data(stream_id, b"body", end_stream=True)
    events = shuttle(edge, connector)
    opened = [e for e in events if isinstance(e, protocol.StreamOpened)]
    assert opened[0].head == head
    assert [e.data for e in events if isinstance(e, protocol.DataReceived)] == [b"body"]
    assert any(isinstance(e, protocol.StreamEnded) for e in events)

    connector.send_response(stream_id, ResponseHead(201, ((b"set-cookie", b"a"),), has_body=False))
    edge_events = shuttle(connector, edge)
    started = [e for e in edge_events if isinstance(e, protocol.ResponseStarted)]
    assert started[0].head == ResponseHead(201, ((b"set-cookie", b"a"),), has_body=False)


def test_unknown_role_is_refused():
    with pytest.raises(ValueError):
        protocol.TunnelSession("proxy")


def test_garbage_after_preface_is_a_protocol_error():
    connector = protocol.TunnelSession("connector")
    with pytest.raises(ProtocolError):
        connector.receive_data(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x01\x09\x00\x00\x00\x00\x00x")


def test_a_session_is_closed_once_the_peer_sent_goaway():
    edge, connector = protocol.TunnelSession("edge"), protocol.TunnelSession("connector")
    shuttle(edge, connector)
    assert not connector.closed
    edge.goaway()
    shuttle(edge, connector)
    assert edge.closed and connector.closed  # so the keepalive sends no PING (h2 would raise)
