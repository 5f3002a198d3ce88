"""The sans-IO tunnel protocol: registration, the frame codec, sessions back to back."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import framing, protocol, registration, session_events
from shared.errors import ProtocolError
from shared.events import RequestHead, ResponseHead
from shared.framing import HEADER

REGISTER = registration.Register("tid", b"\x00" * 32, "cid", 2, "burrow/test")


@pytest.mark.parametrize("chunk", [1, 7, 10_000], ids=["byte-by-byte", "small", "whole"])
def test_registration_roundtrip_with_trailing_bytes(chunk):
    wire = REGISTER.to_wire() + b"trailing"
    reader = registration.RegistrationReader(expect_magic=True)
    message = None
    for start in range(0, len(wire), chunk):
        message, rest = reader.feed(wire[start : start + chunk])
        if message is not None:
            break
    assert message == REGISTER
    assert rest + wire[start + chunk :] == b"trailing"


def test_registration_carries_features_and_an_older_connectors_has_none():
    reader = registration.RegistrationReader(expect_magic=True)
    ports = registration.Register("tid", b"\x00" * 32, "cid", 0, "burrow/test", features=frozenset({registration.FEATURE_PORTS}))
    assert reader.feed(ports.to_wire())[0].features == {"ports"}
    older = {"type": "register", "version": 2, "tunnel_id": "t", "secret": "AA==", "connector_id": "c", "conn_index": 0,
             "client_version": "burrow/0.0.9"}  # fmt: skip
    message, _ = registration.RegistrationReader(expect_magic=True).feed(registration.MAGIC + registration.frame(older))
    assert message.features == frozenset()
    bad = registration.MAGIC + registration.frame(older | {"features": "ports"})
    with pytest.raises(ProtocolError, match="features must be a list"):
        registration.RegistrationReader(expect_magic=True).feed(bad)


@pytest.mark.parametrize(
    "wire, reason",
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not a Burrow tunnel client"),
        (b"BURROW-TUNNEL/1\n\x00\x00\x00\x02{}", "unsupported tunnel protocol version 1 .this edge speaks 2.: upgrade"),
        (registration.MAGIC + b"\xff\xff\xff\xff", "too large"),
        (registration.MAGIC + registration.frame({"type": "register", "version": 1}), "version"),
        (registration.MAGIC + registration.frame({"type": "hello"}), "unknown"),
        (registration.MAGIC + b"\x00\x00\x00\x02{]", "malformed"),
    ],
    ids=["http", "old-magic", "oversized", "version", "type", "json"],
)
def test_registration_rejects_garbage(wire, reason):
    with pytest.raises(ProtocolError, match=reason):
        registration.RegistrationReader(expect_magic=True).feed(wire)


def test_an_old_magic_is_named_even_when_it_arrives_byte_by_byte():
    reader = registration.RegistrationReader(expect_magic=True)
    for byte in b"BURROW-TUNNEL/1"[:-1]:
        assert reader.feed(bytes([byte])) == (None, b"")
    with pytest.raises(ProtocolError, match="version 1"):
        reader.feed(b"1\n")


@pytest.mark.parametrize("message", [registration.Registered("c1", "e1"), registration.Rejected("no", False)])
def test_edge_answers_roundtrip(message):
    assert registration.RegistrationReader(expect_magic=False).feed(message.to_wire()) == (message, b"")


# --- Head codec ---------------------------------------------------------------------

names = st.binary(min_size=1, max_size=20)
header_lists = st.lists(st.tuples(names, st.binary(max_size=50)), max_size=20).map(tuple)


def framed(payload: bytes, pad: bytes = b"\xaa" * 3) -> tuple[bytes, int, int]:
    """`payload` inside other bytes, as the decoders see it."""
    return pad + payload + pad, len(pad), len(pad) + len(payload)


@given(st.binary(max_size=10), st.binary(max_size=10), st.binary(max_size=30), st.binary(max_size=30), header_lists)
def test_request_heads_roundtrip_with_names_order_and_duplicates(method, scheme, authority, target, headers):
    headers = headers + ((b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"))
    payload = framing.pack_request(method, scheme, authority, target, b"http", headers)
    assert framing.unpack_request(*framed(payload)) == (method, scheme, authority, target, b"http", headers)


@given(st.integers(100, 999), header_lists)
def test_response_heads_and_trailers_roundtrip(status, headers):
    assert framing.unpack_response(*framed(framing.pack_response(status, headers))) == (status, headers)
    assert framing.unpack_trailers(*framed(framing.pack_trailers(headers))) == headers


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "no field count"),
        (b"\x00\x02\x00\x00\x00\x01", "cut short"),
        (b"\x00\x01\x00\x00\x00\x05abc", "do not add up"),
        (b"\x00\x01\x00\x00\x00\x01ab", "do not add up"),
        (b"\x00\x01\x00\x00\x00\x01a", "without a value"),
    ],
)
def test_malformed_heads_are_refused(payload, reason):
    with pytest.raises(ProtocolError, match=reason):
        framing.unpack_trailers(*framed(payload))


def test_requests_need_their_fixed_fields_and_statuses_their_range():
    with pytest.raises(ProtocolError, match="needs method"):
        framing.unpack_request(*framed(framing.pack_trailers(((b"a", b"b"),))))
    with pytest.raises(ProtocolError, match="status 99"):
        framing.unpack_response(*framed(b"\x00\x63" + framing.pack_trailers(())))
    with pytest.raises(ProtocolError, match="cannot send status"):
        framing.pack_response(1000, ())


def test_a_head_above_the_limit_is_not_sent():
    edge = protocol.TunnelSession("edge")
    big = RequestHead(b"GET", b"/", b"h", headers=((b"x", b"v" * protocol.MAX_HEADER_LIST_SIZE),))
    with pytest.raises(ProtocolError, match="exceeds the tunnel limit"):
        edge.open_stream(big)
    assert edge.open_streams == 0 and edge.data_to_send() == b""


# --- Sessions -------------------------------------------------------------------------


def shuttle(a: protocol.TunnelSession, b: protocol.TunnelSession, chunk: int = 0) -> list:
    """Move bytes both ways until quiet (`chunk` bytes at a time when set); return b's events."""
    events = []
    while True:
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            return events
        step = chunk or len(out_a) or 1
        for start in range(0, len(out_a), step):
            events += b.receive_data(out_a[start : start + step])
        if out_b:
            a.receive_data(out_b)


def pair():
    return protocol.TunnelSession("edge"), protocol.TunnelSession("connector")


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


REQUEST = RequestHead(b"POST", b"/p?q=1", b"app.example.test", b"https", ((b"x-a", b"1"), (b"x-a", b"2")), True)


@pytest.mark.parametrize("chunk", [0, 1, 7], ids=["whole", "byte-by-byte", "small"])
def test_sessions_back_to_back_carry_request_body_response_and_trailers(chunk):
    edge, connector = pair()
    stream_id = edge.open_stream(REQUEST)
    edge.send_data(stream_id, b"body")
    edge.send_trailers(stream_id, ((b"grpc-status", b"0"),))
    events = shuttle(edge, connector, chunk)
    assert events == [
        session_events.StreamOpened(stream_id, REQUEST, protocol.KIND_HTTP),
        session_events.DataReceived(stream_id, b"body", 4),
        session_events.TrailersReceived(stream_id, ((b"grpc-status", b"0"),)),
        session_events.StreamEnded(stream_id),
    ]

    connector.send_response(stream_id, ResponseHead(201, ((b"set-cookie", b"a"),)))
    connector.send_data(stream_id, b"x" * 1000)
    connector.end_stream(stream_id)
    edge_events = shuttle(connector, edge, chunk)
    assert edge_events[0] == session_events.ResponseStarted(stream_id, ResponseHead(201, ((b"set-cookie", b"a"),)))
    assert b"".join(e.data for e in of(edge_events, session_events.DataReceived)) == b"x" * 1000
    assert edge_events[-1] == session_events.StreamEnded(stream_id)
    assert edge.open_streams == connector.open_streams == 0


def test_a_request_without_body_ends_at_once_and_a_response_without_body_too():
    edge, connector = pair()
    stream_id = edge.open_stream(RequestHead(b"GET", b"/", b"h"))
    events = shuttle(edge, connector)
    assert events == [
        session_events.StreamOpened(stream_id, RequestHead(b"GET", b"/", b"h"), protocol.KIND_HTTP),
        session_events.StreamEnded(stream_id),
    ]
    connector.send_response(stream_id, ResponseHead(204, (), has_body=False))
    assert shuttle(connector, edge) == [
        session_events.ResponseStarted(stream_id, ResponseHead(204, (), has_body=False)),
        session_events.StreamEnded(stream_id),
    ]
    assert edge.open_streams == connector.open_streams == 0


def test_an_upgrade_stream_gets_its_101_and_then_bytes_both_ways():
    edge, connector = pair()
    stream_id = edge.open_stream(RequestHead(b"GET", b"/ws", b"h"), protocol.KIND_UPGRADE)
    (opened,) = shuttle(edge, connector)
    assert opened.kind == protocol.KIND_UPGRADE and opened.head.has_body  # the stream stays open
    connector.send_response(stream_id, ResponseHead(101, ((b"upgrade", b"websocket"),)))
    connector.send_data(stream_id, b"down")
    assert shuttle(connector, edge) == [
        session_events.ResponseStarted(stream_id, ResponseHead(101, ((b"upgrade", b"websocket"),))),
        session_events.DataReceived(stream_id, b"down", 4),
    ]
    edge.send_data(stream_id, b"up")
    assert of(shuttle(edge, connector), session_events.DataReceived) == [session_events.DataReceived(stream_id, b"up", 2)]


def test_unknown_role_is_refused():
    with pytest.raises(ValueError):
        protocol.TunnelSession("proxy")


def frame(kind, stream_id, payload=b"", flags=0):
    return HEADER.pack(len(payload), kind, flags, stream_id) + payload


@pytest.mark.parametrize(
    "role, wire, reason",
    [
        ("connector", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "unknown frame type"),
        ("connector", frame(42, 0), "unknown frame type 42"),
        ("connector", frame(framing.PING, 0, b"12345678", flags=framing.END_STREAM), "flags"),
        ("connector", frame(framing.DATA, 1, b"x", flags=0x2), "flags"),
        ("connector", frame(framing.DATA, 1, b"x"), "never opened"),
        ("connector", frame(framing.REQUEST, 2, framing.pack_request(b"GET", b"https", b"h", b"/", b"http", ())), "out of order"),
        ("connector", frame(framing.REQUEST, 1, framing.pack_request(b"GET", b"https", b"h", b"/", b"sctp", ())), "kind"),
        ("connector", frame(framing.RESPONSE, 1, framing.pack_response(200, ())), "the edge sent a RESPONSE"),
        ("edge", frame(framing.REQUEST, 1, framing.pack_request(b"GET", b"https", b"h", b"/", b"http", ())), "the connector opened"),
        ("edge", frame(framing.RESPONSE, 1, framing.pack_response(200, ())), "never opened"),
        ("edge", frame(framing.PING, 0, b"short"), "PING of 5 bytes"),
        ("edge", frame(framing.PING, 3, b"12345678"), "on stream 3"),
        ("edge", frame(framing.WINDOW, 0, b"\x00\x00\x00\x00"), "WINDOW of 0"),
        ("edge", frame(framing.WINDOW, 0, b"\x7f\xff\xff\xff"), "overflowed"),
        ("edge", frame(framing.RESET, 0, b"\x00\x00\x00\x08"), "never opened"),
    ],
)
def test_protocol_violations_end_the_session_with_a_clear_error(role, wire, reason):
    with pytest.raises(ProtocolError, match=f"tunnel peer broke the protocol: .*{reason}"):
        protocol.TunnelSession(role).receive_data(wire)


@pytest.mark.parametrize(
    "kind, limit", [(framing.DATA, protocol.MAX_FRAME_SIZE), (framing.TRAILERS, protocol.MAX_HEADER_LIST_SIZE)]
)
def test_an_oversized_frame_fails_on_its_header_before_the_payload_arrives(kind, limit):
    session = protocol.TunnelSession("edge")
    session.receive_data(HEADER.pack(limit, kind, 0, 1)[:4])  # an allowed size is not refused...
    session = protocol.TunnelSession("edge")
    with pytest.raises(ProtocolError, match=f"a frame of {limit + 1} bytes"):
        session.receive_data(HEADER.pack(limit + 1, kind, 0, 1))  # ...one byte more is, on the header alone


def test_the_concurrent_stream_limit_on_both_sides():
    edge, connector = pair()
    for _ in range(protocol.MAX_CONCURRENT_STREAMS):
        edge.open_stream(RequestHead(b"GET", b"/", b"h", has_body=True))
    assert edge.open_streams == edge.max_streams == protocol.MAX_CONCURRENT_STREAMS
    with pytest.raises(ProtocolError, match="no free stream"):
        edge.open_stream(RequestHead(b"GET", b"/", b"h"))
    assert len(shuttle(edge, connector)) == protocol.MAX_CONCURRENT_STREAMS
    # a peer beyond the limit (a hand-made frame) gets its stream refused, not the session failed
    over = 2 * protocol.MAX_CONCURRENT_STREAMS + 1
    request = frame(framing.REQUEST, over, framing.pack_request(b"GET", b"https", b"h", b"/", b"http", ()))
    assert connector.receive_data(request + frame(framing.DATA, over, b"late")) == []
    refusal = frame(framing.RESET, over, protocol.REFUSED_STREAM.to_bytes(4, "big"))
    assert connector.data_to_send() == refusal
    edge = protocol.TunnelSession("edge")
    ids = [edge.open_stream(RequestHead(b"GET", b"/", b"h")) for _ in range(3)]
    refusal = frame(framing.RESET, ids[2], protocol.REFUSED_STREAM.to_bytes(4, "big"))
    assert edge.receive_data(refusal) == [session_events.StreamReset(ids[2], protocol.REFUSED_STREAM)]


def body_pair(has_body=True):
    edge, connector = pair()
    stream_id = edge.open_stream(RequestHead(b"GET", b"/", b"h", has_body=has_body))
    shuttle(edge, connector)
    connector.send_response(stream_id, ResponseHead(200))
    shuttle(connector, edge)
    return edge, connector, stream_id


def send_frames(connector, edge, stream_id, count):
    """`count` full DATA frames from connector to edge; the edge's DataReceived events."""
    for _ in range(count):
        connector.send_data(stream_id, b"x" * protocol.MAX_FRAME_SIZE)
    return edge.receive_data(connector.data_to_send())


def test_output_is_taken_as_frames_with_views_of_bytes_uncopied():
    edge, connector, stream_id = body_pair()
    body = bytes(range(256)) * 512
    view = memoryview(body)[1000:3000]
    connector.send_data(stream_id, view)
    connector.send_data(stream_id, bytearray(b"changeable"))
    frames = connector.take_output()
    assert frames[1] is view and type(frames[3]) is bytes  # a bytearray is copied, a view of bytes is not
    assert connector.take_output() == []
    events = edge.receive_data(b"".join(frames))
    assert [event.data for event in events] == [body[1000:3000], b"changeable"]


def test_window_updates_are_batched_until_half_a_window_is_consumed():
    edge, connector, stream_id = body_pair()
    half = protocol.STREAM_WINDOW // 2 // protocol.MAX_FRAME_SIZE
    for event in send_frames(connector, edge, stream_id, half - 1):
        edge.acknowledge(stream_id, event.flow_length)
    assert edge.data_to_send() == b""
    (event,) = send_frames(connector, edge, stream_id, 1)
    edge.acknowledge(stream_id, event.flow_length)
    assert connector.receive_data(edge.data_to_send()) == [session_events.WindowOpened(stream_id)]
    assert connector._streams[stream_id].send == protocol.STREAM_WINDOW


def test_a_blocked_sender_gets_credit_back_with_the_first_acknowledgement():
    edge, connector, stream_id = body_pair()
    assert connector.send_window(stream_id) == protocol.MAX_FRAME_SIZE
    events = send_frames(connector, edge, stream_id, protocol.STREAM_WINDOW // protocol.MAX_FRAME_SIZE)
    assert connector.send_window(stream_id) == 0  # a whole window is in flight
    with pytest.raises(ProtocolError, match="beyond its send window"):
        connector.send_data(stream_id, b"x")
    edge.acknowledge(stream_id, events[0].flow_length)  # less than half a window, yet granted: no deadlock
    assert connector.receive_data(edge.data_to_send()) == [session_events.WindowOpened(stream_id)]
    assert connector.send_window(stream_id) == protocol.MAX_FRAME_SIZE


def test_a_peer_overrunning_the_window_breaks_the_protocol():
    edge, _connector, stream_id = body_pair()
    chunk = b"x" * protocol.MAX_FRAME_SIZE
    wire = frame(framing.DATA, stream_id, chunk) * (protocol.STREAM_WINDOW // protocol.MAX_FRAME_SIZE)
    assert len(edge.receive_data(wire)) == 16
    with pytest.raises(ProtocolError, match="beyond stream 1's flow-control window"):
        edge.receive_data(frame(framing.DATA, stream_id, b"x"))


def test_the_connection_window_bounds_all_streams():
    edge = protocol.TunnelSession("edge")
    ids = [edge.open_stream(RequestHead(b"GET", b"/", b"h")) for _ in range(17)]
    wire = b"".join(frame(framing.RESPONSE, i, framing.pack_response(200, ())) for i in ids)
    wire += b"".join(frame(framing.DATA, i, b"x" * protocol.MAX_FRAME_SIZE) * 16 for i in ids[:16])
    edge.receive_data(wire)  # 16 MiB: the whole connection window
    with pytest.raises(ProtocolError, match="connection's flow-control window"):
        edge.receive_data(frame(framing.DATA, ids[16], b"x"))


def test_frames_for_a_locally_reset_stream_are_ignored_and_their_credit_returned():
    edge, connector, stream_id = body_pair()
    connector.send_data(stream_id, b"x" * 1000)
    edge.receive_data(connector.data_to_send())
    edge.reset_stream(stream_id)
    edge.reset_stream(stream_id)  # a no-op now
    assert of(shuttle(edge, connector), session_events.StreamReset) == [session_events.StreamReset(stream_id, protocol.CANCEL)]
    assert edge.open_streams == connector.open_streams == 0
    with pytest.raises(ProtocolError, match="closed"):
        connector.send_data(stream_id, b"late")
    late = frame(framing.DATA, stream_id, b"y" * protocol.MAX_FRAME_SIZE) * 300  # > 16 MiB: credit came back
    assert edge.receive_data(late) == []
    assert edge.receive_data(frame(framing.TRAILERS, stream_id, framing.pack_trailers(()), framing.END_STREAM)) == []


def test_a_peer_reset_returns_the_credit_of_bytes_never_consumed():
    edge, connector, stream_id = body_pair()
    send_frames(connector, edge, stream_id, 8)  # half a MiB received, never acknowledged
    connector.reset_stream(stream_id)
    assert of(edge.receive_data(connector.data_to_send()), session_events.StreamReset)
    edge.acknowledge(stream_id, protocol.MAX_FRAME_SIZE)  # a late acknowledgement counts nothing twice
    assert edge._receive_credit + edge._unreported == protocol.CONNECTION_WINDOW


def test_a_finished_stream_owes_its_unconsumed_credit_until_acknowledged_or_released():
    edge, connector, stream_id = body_pair()
    edge.end_stream(stream_id)
    connector.receive_data(edge.data_to_send())
    events = send_frames(connector, edge, stream_id, 8)
    connector.end_stream(stream_id)
    edge.receive_data(connector.data_to_send())
    assert edge.open_streams == 0  # finished on the wire, its bytes still queued for the consumer
    edge.acknowledge(stream_id, events[0].flow_length)
    edge.acknowledge(stream_id, events[0].flow_length)
    assert edge._receive_credit + edge._unreported == protocol.CONNECTION_WINDOW - 6 * protocol.MAX_FRAME_SIZE
    edge.reset_stream(stream_id)  # the consumer dropped the rest: released without a frame
    assert edge._receive_credit + edge._unreported == protocol.CONNECTION_WINDOW
    edge.acknowledge(stream_id, events[2].flow_length)  # nothing owed any more
    assert edge._receive_credit + edge._unreported == protocol.CONNECTION_WINDOW


def test_ping_is_acked_and_a_drain_ping_announces_a_drain():
    edge, connector = pair()
    edge.ping(b"\x00" * 7 + b"\x01")
    connector.announce_drain()
    assert connector.receive_data(edge.data_to_send()) == []  # answered with a PING_ACK
    assert edge.receive_data(connector.data_to_send()) == [
        session_events.DrainRequested(), session_events.PingAcked(b"\x00" * 7 + b"\x01")
    ]
    assert connector.receive_data(edge.data_to_send()) == [session_events.PingAcked(protocol.DRAIN_PING)]
    with pytest.raises(ProtocolError):
        edge.ping(b"short")


def test_goaway_closes_the_session_on_both_sides():
    edge, connector = pair()
    first = edge.open_stream(RequestHead(b"GET", b"/", b"h", has_body=True))
    shuttle(edge, connector)
    second = edge.open_stream(RequestHead(b"GET", b"/", b"h"))
    assert edge.data_to_send()  # in flight while the connector closes
    connector.goaway()
    connector.goaway()  # a no-op once closed
    assert connector.closed and not edge.closed
    assert edge.receive_data(connector.data_to_send() + frame(framing.PING, 0, b"12345678")) == [
        session_events.GoAway(protocol.NO_ERROR, first)  # `second` never reached the connector; the PING is ignored
    ]
    assert edge.closed and second > first
    for send in (lambda: edge.send_data(first, b"x"), lambda: edge.open_stream(REQUEST), lambda: edge.ping(b"1" * 8)):
        with pytest.raises(ProtocolError, match="closed"):
            send()
    edge.reset_stream(first)  # no-ops once closed
    edge.acknowledge(first, 10)
    assert edge.data_to_send() == b"" and edge.send_window(first) == 0


def test_sending_out_of_turn_is_refused_locally():
    _edge, connector, stream_id = body_pair()
    with pytest.raises(ProtocolError, match="second response"):
        connector.send_response(stream_id, ResponseHead(200))
    with pytest.raises(ProtocolError, match="only the edge"):
        connector.open_stream(REQUEST)
    fresh_edge, fresh_connector = pair()
    other = fresh_edge.open_stream(REQUEST)
    shuttle(fresh_edge, fresh_connector)
    with pytest.raises(ProtocolError, match="before its head"):
        fresh_connector.send_data(other, b"x")


@given(st.lists(st.integers(1, 300), max_size=40), header_lists, st.binary(max_size=3000))
def test_any_split_of_the_byte_stream_gives_the_same_events(cuts, headers, body):
    edge, connector = pair()
    stream_id = edge.open_stream(RequestHead(b"PUT", b"/u", b"h", headers=headers, has_body=True))
    for start in range(0, len(body), 1000):
        edge.send_data(stream_id, body[start : start + 1000])
    edge.send_trailers(stream_id, headers)
    edge.ping(b"pingpong")
    wire = edge.data_to_send()
    whole = protocol.TunnelSession("connector").receive_data(wire)
    events, start = [], 0
    for cut in cuts:
        events += connector.receive_data(wire[start : start + cut])
        start += cut
    events += connector.receive_data(wire[start:])
    assert events == whole
    assert b"".join(e.data for e in of(events, session_events.DataReceived)) == body
    assert of(events, session_events.TrailersReceived) == [session_events.TrailersReceived(stream_id, headers)]


@given(st.sampled_from(["edge", "connector"]), st.lists(st.tuples(st.integers(0, 9), st.integers(0, 1), st.integers(0, 5), st.binary(max_size=40))))
def test_arbitrary_frames_give_events_or_a_protocol_error_only(role, frames):
    session = protocol.TunnelSession(role)
    if role == "edge":
        session.open_stream(RequestHead(b"GET", b"/", b"h", has_body=True))
    try:
        session.receive_data(b"".join(frame(kind, stream_id, payload, flags) for kind, flags, stream_id, payload in frames))
    except ProtocolError as exc:
        assert str(exc).startswith("tunnel peer broke the protocol: ")


def test_a_status_stream_without_body_ends_at_once_and_its_answer_closes_it():
    edge, connector = pair()
    stream_id = edge.open_stream(RequestHead(b"GET", b"/pools", b""), protocol.KIND_STATUS)
    events = shuttle(edge, connector)
    assert [e.kind for e in of(events, session_events.StreamOpened)] == [protocol.KIND_STATUS]
    assert of(events, session_events.StreamEnded)
    connector.send_response(stream_id, ResponseHead(200, ((b"content-type", b"application/json"),)))
    connector.send_data(stream_id, b'{"pools":[]}', end_stream=True)
    shuttle(connector, edge)
    assert edge.open_streams == connector.open_streams == 0
