"""The HTTP/2 visitor adapter, driven by a real h2 client over memory streams and loopback sockets."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from contextlib import asynccontextmanager

import h2.config
import h2.connection
import h2.events
import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import ContinuationFrame, HeadersFrame

from edge.visitors.http2 import Http2Connection, Http2Limits
from edge.visitors.http2_fields import MalformedRequest, request_head, response_headers, websocket_accept
from edge.visitors.http2_guards import (
    PREFACE,
    HeaderBlockMeter,
    HeaderBlockTooLarge,
    ResetRateGuard,
)
from shared.events import ResponseHead
from tests.h2_client import Client

MIB = 1024 * 1024
CLIENT = ("127.0.0.1", 5)
SERVER = ("127.0.0.1", 443)


async def app(exchange):
    """Echo: /download?N sends N bytes; /hang never answers; anything else describes the request."""
    digest, length = hashlib.sha256(), 0
    while chunk := await exchange.receive_body():
        digest.update(chunk)
        length += len(chunk)
    head = exchange.head
    if head.target.startswith(b"/hang"):
        await trio.sleep_forever()
    if head.target.startswith(b"/download"):
        size = int(head.target.partition(b"?")[2])
        await exchange.send_response(ResponseHead(200, ((b"content-length", str(size).encode()),)))
        block = bytes(range(256)) * 256
        for offset in range(0, size, len(block)):
            await exchange.send_body(block[: size - offset])
        await exchange.end()
        return
    body = json.dumps(
        {
            "method": head.method.decode(),
            "target": head.target.decode(),
            "authority": head.authority.decode(),
            "headers": [[k.decode(), v.decode()] for k, v in head.headers],
            "sha256": digest.hexdigest(),
            "length": length,
        }
    ).encode()
    await exchange.send_response(
        ResponseHead(200, ((b"Content-Type", b"application/json"), (b"Connection", b"close"), (b"keep-alive", b"5")))
    )
    await exchange.send_body(body)
    await exchange.end()


@asynccontextmanager
async def connect(limits: Http2Limits = Http2Limits(), handler=app, pair=trio.testing.memory_stream_pair):
    """A client talking to an `Http2Connection` serving `handler`; `client.served` is set when it returns."""
    client_stream, server_stream = pair()
    connection = Http2Connection(server_stream, CLIENT, SERVER, limits)
    client = Client(client_stream)
    client.served = trio.Event()

    async def serve():
        try:
            await connection.serve(handler)
        finally:
            client.served.set()
            await server_stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await nursery.start(client.run)
        yield client
        nursery.cancel_scope.cancel()


async def test_requests_with_and_without_bodies():
    async with connect() as client:
        get = await client.request("/a?q=1", headers=[("x-custom", "one"), ("cookie", "a=1"), ("cookie", "b=2")])
        post = await client.request("/b", "POST", body=b"hello")
        head = await client.request("/c", "HEAD")
    assert get.status == 200 and post.status == 200 and head.status == 200
    echo = get.json()
    assert (echo["method"], echo["target"], echo["authority"]) == ("GET", "/a?q=1", "app.test")
    assert echo["headers"][0] == ["host", "app.test"]
    assert ["x-custom", "one"] in echo["headers"] and ["cookie", "a=1; b=2"] in echo["headers"]
    assert (post.json()["length"], post.json()["sha256"]) == (5, hashlib.sha256(b"hello").hexdigest())
    assert head.body == b""
    names = [name for name, _ in get.headers]
    assert b"content-type" in names and b"connection" not in names and b"keep-alive" not in names


async def test_large_bodies_respect_flow_control_both_ways():
    body = bytes(range(251)) * (5 * MIB // 251)
    async with connect() as client:
        upload = await client.request("/up", "PUT", body=body)
        download = await client.request(f"/download?{5 * MIB}")
    assert upload.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert len(download.body) == 5 * MIB
    assert download.body == (bytes(range(256)) * 256 * 80)[: 5 * MIB]


async def test_many_concurrent_streams_each_get_their_own_answer():
    async with connect() as client:
        ids = [client.start(f"/id/{i}") for i in range(100)]
        await client.flush()
        with trio.fail_after(30):
            for stream_id in ids:
                await client.responses[stream_id].done.wait()
    assert [client.responses[s].json()["target"] for s in ids] == [f"/id/{i}" for i in range(100)]


@pytest.mark.parametrize(
    "headers",
    [
        [(f"x-{i}", "v") for i in range(101)],
        [("x-big", "a" * 70_000)],
        [("x-big", "b" * 3000)] * 25,  # 75 KB decoded from a small block: over the list size, under the cap
    ],
    ids=["too-many-fields", "list-too-large", "indexed-repeats"],
)
async def test_oversized_requests_get_431_and_the_connection_lives_on(headers):
    async with connect() as client:
        refused = await client.request("/", headers=headers)
        after = await client.request("/after")
    assert refused.status == 431
    assert (b"burrow-error", b"edge") in refused.headers
    assert after.status == 200


@pytest.mark.parametrize(
    "headers", [[("x-big", "a" * 140_000)], [("x-bomb", "b" * 3000)] * 60], ids=["huge-block", "hpack-bomb"]
)
async def test_header_blocks_past_the_hard_cap_close_the_connection(headers):
    async with connect() as client:
        client.start("/", headers=headers)
        await client.flush()
        with trio.fail_after(5):
            await client.served.wait()
            await client.closed.wait()
    assert client.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


@pytest.mark.parametrize(
    "size, code",
    [(16_000, ErrorCodes.ENHANCE_YOUR_CALM), (0, ErrorCodes.PROTOCOL_ERROR)],
    ids=["big-frames-hit-our-block-cap", "empty-frames-hit-h2s-64-frame-cap"],
)
async def test_continuation_flood_is_cut_off_with_goaway(size, code):
    async with connect() as client:
        assert (await client.request("/")).status == 200  # SETTINGS exchanged: nothing else interleaves
        frame = HeadersFrame(3, data=b"\x00" * 100)  # END_HEADERS never comes
        await client.send_raw(frame.serialize())
        with trio.fail_after(5):
            try:
                for _ in range(10_000):
                    await client.send_raw(ContinuationFrame(3, data=b"\x00" * size).serialize())
            except trio.BrokenResourceError:
                pass  # the edge hung up
            await client.closed.wait()
    assert client.goaway.error_code == code


async def test_rapid_reset_gets_goaway_while_another_visitor_is_served():
    async with connect() as other, connect() as attacker:
        assert (await other.request("/before")).status == 200
        with trio.fail_after(10):
            while attacker.goaway is None and not attacker.closed.is_set():
                stream_id = attacker.start("/hang")
                attacker.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
                await attacker.flush()
                await trio.sleep(0)
        assert attacker.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert (await other.request("/after")).status == 200


async def test_resetting_a_stream_cancels_only_its_handler():
    async with connect() as client:
        hanging = client.start("/hang")
        await client.flush()
        client.h2.reset_stream(hanging, ErrorCodes.CANCEL)
        await client.flush()
        assert (await client.request("/next")).status == 200


async def test_the_last_allowed_request_brings_a_graceful_goaway_then_its_answer():
    # Raw frames: python-h2 as a client refuses HEADERS after a GOAWAY (httpcore#46), curl does not.
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    for stream_id in range(1, 13, 2):  # six requests; the limit is five
        client.send_headers(stream_id, [(":method", "GET"), (":path", "/"), (":scheme", "https"),
                                        (":authority", "a")], end_stream=True)
    await client_stream.send_all(client.data_to_send())
    with trio.fail_after(5):
        await Http2Connection(server_stream, CLIENT, SERVER, Http2Limits(max_requests=5)).serve(app)
    frames = FrameBuffer()
    frames.max_frame_size = 16384
    frames.add_data(await client_stream.receive_some())
    seen = [(type(f).__name__, f.stream_id, getattr(f, "last_stream_id", None), getattr(f, "error_code", None),
             "END_STREAM" in f.flags) for f in frames]
    goaways = [entry for entry in seen if entry[0] == "GoAwayFrame"]
    assert goaways == [("GoAwayFrame", 0, 9, 0, False)] * 2
    first = seen.index(goaways[0])
    assert ("DataFrame", 9, None, None, True) in seen[first:]  # stream 9 still answered in full
    assert ("RstStreamFrame", 11, None, ErrorCodes.REFUSED_STREAM, False) in seen
    assert not any(entry[1] == 11 and entry[0] == "HeadersFrame" for entry in seen)


@asynccontextmanager
async def tcp_pair():
    """A connected loopback socket pair: real kernel buffers, so an idle reader pushes back."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    yield client, server


@pytest.mark.parametrize(
    "batch, pause, reason",
    [(2000, 0, "control frames queued faster than read"), (100, 0.001, "write failed: TooSlowError")],
    ids=["burst-hits-the-control-frame-cap", "paced-hits-the-send-timeout"],
)
async def test_ping_flood_from_a_visitor_that_never_reads_is_closed(batch, pause, reason, caplog):
    caplog.set_level(logging.DEBUG, logger="edge.visitors.http2")
    async with tcp_pair() as (client_stream, server_stream):
        connection = Http2Connection(server_stream, CLIENT, SERVER, Http2Limits(send_timeout=2))
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        await client_stream.send_all(client.data_to_send())
        pings = b"".join(client.ping(b"%08d" % i) or client.data_to_send() for i in range(batch))

        async def serve():
            await connection.serve(app)
            await server_stream.aclose()  # as HttpsFrontend does

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            with trio.fail_after(10):
                try:
                    while True:
                        await client_stream.send_all(pings)
                        await trio.sleep(pause)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the edge hung up
    assert reason in caplog.text


async def test_silent_visitor_is_dropped_after_the_preface_timeout(autojump_clock):
    client_stream, server_stream = trio.testing.memory_stream_pair()
    with trio.fail_after(11):
        await Http2Connection(server_stream, CLIENT, SERVER).serve(app)
    assert trio.current_time() >= 10


async def test_idle_connection_is_closed_after_the_idle_timeout(autojump_clock):
    async with connect() as client:
        assert (await client.request("/")).status == 200
        started = trio.current_time()
        await client.closed.wait()
    assert 75 <= trio.current_time() - started < 76
    assert client.goaway.error_code == ErrorCodes.NO_ERROR


# Pure parts -------------------------------------------------------------------------------


def test_request_head_takes_authority_and_the_connections_scheme():
    head, problem = request_head(
        ((b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x"), (b":authority", b"a.test"),
         (b"host", b"other"), (b"x", b"1")),
        True, b"https", Http2Limits(),
    )
    assert problem is None
    assert (head.method, head.target, head.authority, head.scheme, head.has_body) == (
        b"POST", b"/x", b"a.test", b"https", True
    )
    assert head.headers == ((b"host", b"a.test"), (b"x", b"1"))


GET = ((b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a.test"))


@pytest.mark.parametrize(
    "name, value",
    [(b":path", b"x"), (b":path", b"*"), (b":path", b"/a\x7fb"), (b":authority", b"u@a.test"), (b":authority", b""),
     (b":authority", b"a.test:99999x"), (b":scheme", b"wss"), (b":method", b"G(T")],
)
def test_malformed_pseudo_header_values_are_refused(name, value):
    fields = tuple((n, value if n == name else v) for n, v in GET)
    with pytest.raises(MalformedRequest):
        request_head(fields, False, b"https", Http2Limits())


def test_options_asterisk_and_plain_connect_are_well_formed():
    options = ((b":method", b"OPTIONS"), *GET[1:2], (b":path", b"*"), GET[3])
    assert request_head(options, False, b"https", Http2Limits())[1][0] == 400
    assert request_head(((b":method", b"CONNECT"), (b":authority", b"a.test:443")), False, b"https", Http2Limits())[1][0] == 501


def test_request_with_content_length_zero_has_no_body_even_without_end_stream():
    base = ((b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a"))
    assert not request_head(base + ((b"content-length", b"0"),), True, b"https", Http2Limits())[0].has_body
    assert request_head(base, True, b"https", Http2Limits())[0].has_body


def test_extended_connect_for_websocket_becomes_an_http1_upgrade_request():
    base = ((b":method", b"CONNECT"), (b":scheme", b"https"), (b":path", b"/chat?x=1"), (b":authority", b"a.test"))
    head, problem = request_head(
        base + ((b":protocol", b"websocket"), (b"sec-websocket-version", b"13"), (b"sec-websocket-key", b"forged")),
        True, b"https", Http2Limits(),
    )
    assert problem is None
    assert (head.method, head.target, head.authority, head.has_body) == (b"GET", b"/chat?x=1", b"a.test", False)
    assert (head.header(b"connection"), head.header(b"upgrade")) == (b"upgrade", b"websocket")
    key = head.header(b"sec-websocket-key")
    assert key != b"forged" and len(base64.b64decode(key)) == 16
    assert [name for name, _ in head.headers].count(b"sec-websocket-key") == 1
    assert request_head(base + ((b":protocol", b"chat"),), True, b"https", Http2Limits())[1][0] == 501
    assert request_head(((b":method", b"CONNECT"), (b":authority", b"a:1")), True, b"https", Http2Limits())[1] == (
        501, "CONNECT is not supported"
    )
    assert websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3


async def test_the_edge_announces_extended_connect():
    async with connect() as client:
        assert (await client.request("/")).status == 200
        assert client.h2.remote_settings.enable_connect_protocol == 1


def test_response_headers_drop_connection_specific_fields():
    headers = (
        (b"Content-Type", b"text/plain"), (b"connection", b"x-hop"), (b"x-hop", b"1"), (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"), (b"proxy-connection", b"k"), (b"te", b"gzip"), (b"te", b"trailers"), (b"set-cookie", b"a"),
    )
    assert response_headers(headers) == ((b"content-type", b"text/plain"), (b"te", b"trailers"), (b"set-cookie", b"a"))


def test_reset_guard_trips_only_past_the_stream_floor_and_half():
    guard = ResetRateGuard(min_streams=100, window=1.0)
    for _ in range(99):
        guard.opened(0.0)
        assert not guard.reset(0.0)
    guard.opened(0.5)
    assert guard.reset(0.5)
    calm = ResetRateGuard(min_streams=100, window=1.0)
    for i in range(300):
        calm.opened(i * 0.001)
        assert not (i % 3 == 0 and calm.reset(i * 0.001))


@pytest.mark.parametrize("step", [1, 7, 4096], ids=["byte-by-byte", "odd-chunks", "whole"])
def test_header_block_meter_sums_continuations_across_reads(step):
    def feed(meter, data):
        for offset in range(0, len(data), step):
            meter.feed(data[offset : offset + step])

    fits = HeadersFrame(1, data=b"a" * 50).serialize()  # END_HEADERS absent
    fits += ContinuationFrame(1, data=b"b" * 40, flags=["END_HEADERS"]).serialize()
    fits += HeadersFrame(3, data=b"c" * 100, flags=["END_HEADERS"]).serialize()
    meter = HeaderBlockMeter(max_block=100)
    feed(meter, PREFACE + fits)
    with pytest.raises(HeaderBlockTooLarge):
        feed(meter, HeadersFrame(5, data=b"c" * 60).serialize() + ContinuationFrame(5, data=b"d" * 50).serialize())


async def test_held_responses_arrive_whole_small_or_beyond_the_flow_control_window():
    async def held(exchange):
        exchange.hold()  # as the proxy does when the tunnel delivered the whole response
        await app(exchange)

    async with connect(handler=held) as client:
        small = await client.request("/small")
        large = await client.request(f"/download?{MIB}")
    assert small.status == 200 and small.json()["target"] == "/small"
    assert large.body == (bytes(range(256)) * 256 * 16)[:MIB]
