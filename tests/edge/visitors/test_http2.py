"""The HTTP/2 visitor adapter, driven by a real h2 client over memory streams and loopback sockets."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
from contextlib import asynccontextmanager

import h2.config
import h2.connection
import h2.events
import hpack
import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from edge.visitors.http2 import Http2Connection, Http2Limits
from edge.visitors.http2_fields import MalformedRequest, request_head, response_headers, websocket_accept
from edge.visitors.http2_guards import PREFACE, Flood, FrameMeter, LeakyBucket, ResetRateGuard
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


async def test_a_stream_reset_in_the_read_that_opened_it_never_starts_and_goaway_cancels_the_rest():
    started, cancelled = [], []

    async def handler(exchange):
        started.append(exchange.head.target)
        try:
            await app(exchange)
        except trio.Cancelled:
            cancelled.append(exchange.head.target)
            raise

    async with connect(handler=handler) as attacker:
        hanging = attacker.start("/hang/started")
        await attacker.flush()
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(10):
            while attacker.goaway is None and not attacker.closed.is_set():
                for _ in range(20):  # HEADERS and RST_STREAM in one write, so in one read
                    attacker.h2.reset_stream(attacker.start("/hang/reset"), ErrorCodes.CANCEL)
                await attacker.flush()
                await trio.sleep(0)
        assert attacker.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert attacker.goaway.additional_data == b"rapid reset"
    assert started == cancelled == [b"/hang/started"] and hanging == 1


async def test_stream_starts_left_unanswered_are_paced_not_refused(autojump_clock):
    starts, release = [], trio.Event()

    async def handler(exchange):
        starts.append(trio.current_time())
        await release.wait()
        await app(exchange)

    async with connect(Http2Limits(max_stream_starts=10), handler=handler) as client:
        ids = [client.start(f"/{i}") for i in range(30)]
        began = trio.current_time()
        await client.flush()
        while len(starts) < 30:
            await trio.sleep(0.01)
        release.set()
        for stream_id in ids:
            await client.responses[stream_id].done.wait()
    assert all(client.responses[i].status == 200 for i in ids)
    assert 1.9 <= starts[-1] - began <= 2.1  # 10 at once, then 10 a second


async def test_streams_answered_in_full_give_their_start_back(autojump_clock):
    starts = []

    async def handler(exchange):
        starts.append(trio.current_time())
        await app(exchange)

    async with connect(Http2Limits(max_stream_starts=10), handler=handler) as client:
        ids = [client.start(f"/{i}") for i in range(30)]
        began = trio.current_time()
        await client.flush()
        for stream_id in ids:
            await client.responses[stream_id].done.wait()
    assert all(client.responses[i].status == 200 for i in ids)
    assert starts[-1] - began < 0.5  # a busy client is not slowed to 10 a second


async def test_a_header_block_dripped_past_the_timeout_is_cut_off(autojump_clock):
    async with connect(Http2Limits(header_block_timeout=10)) as client:
        assert (await client.request("/")).status == 200
        began = trio.current_time()
        await client.send_raw(HeadersFrame(3, data=b"\x82").serialize())  # no END_HEADERS
        while client.goaway is None:
            await client.send_raw(ContinuationFrame(3, data=b"").serialize())
            with trio.move_on_after(3):
                while client.goaway is None:
                    await trio.sleep(0.01)
        cut_off = trio.current_time() - began
        await client.closed.wait()
    assert client.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert 10 <= cut_off < 10.1


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
    "budget, batch, pause, reason",
    [(100, 2000, 0, "PING frames over 100 in 10 s"), (10**9, 100, 0.001, "write failed: TooSlowError")],
    ids=["burst-hits-the-ping-budget", "paced-without-a-budget-hits-the-send-timeout"],
)
async def test_ping_flood_from_a_visitor_that_never_reads_is_closed(budget, batch, pause, reason, caplog):
    caplog.set_level(logging.DEBUG, logger="edge.visitors.http2")
    async with tcp_pair() as (client_stream, server_stream):
        connection = Http2Connection(server_stream, CLIENT, SERVER, Http2Limits(send_timeout=2, max_ping_frames=budget))
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


class StuckWrites(trio.abc.Stream):
    """A server-side stream whose client stops reading once `stuck` is set."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.stuck = False
        self.reads_while_stuck = 0

    async def send_all(self, data) -> None:
        if self.stuck:
            await trio.sleep_forever()
        await self.inner.send_all(data)

    async def receive_some(self, max_bytes=None) -> bytes:
        self.reads_while_stuck += self.stuck
        return await self.inner.receive_some(max_bytes)

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_visitor_that_never_reads_its_resets_stops_being_read(autojump_clock):
    # A download's write is stuck; each malformed request then costs an RST_STREAM the edge
    # can only queue: it reads `max_reads_during_write` more times, then waits for the write
    # (until the send timeout).
    client_stream, server_stream = trio.testing.memory_stream_pair()
    stuck = StuckWrites(server_stream)
    encoder, limits = hpack.Encoder(), Http2Limits(send_timeout=2, max_reads_during_write=4)
    fields = [(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", "/download?100000")]
    download = HeadersFrame(1, data=encoder.encode(fields), flags=["END_HEADERS", "END_STREAM"]).serialize()
    fields[3] = (":path", "no-slash")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Http2Connection(stuck, CLIENT, SERVER, limits).serve, app)
        await client_stream.send_all(PREFACE + SettingsFrame(0).serialize())
        await trio.testing.wait_all_tasks_blocked()
        stuck.stuck = True
        await client_stream.send_all(download)
        await trio.testing.wait_all_tasks_blocked()
        for stream_id in range(3, 100, 2):
            await client_stream.send_all(HeadersFrame(stream_id, data=encoder.encode(fields), flags=["END_HEADERS"]).serialize())
            await trio.testing.wait_all_tasks_blocked()
        assert stuck.reads_while_stuck == 4 + 1  # the last one waits for the write
        started = trio.current_time()
    assert trio.current_time() - started >= 2  # then the send timeout ended it


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


def feed(meter: FrameMeter, data: bytes, step: int, now: float = 0.0, data_sent: int = 0) -> None:
    for offset in range(0, len(data), step):
        meter.feed(data[offset : offset + step], now, data_sent)


@pytest.mark.parametrize("step", [1, 7, 4096], ids=["byte-by-byte", "odd-chunks", "whole"])
def test_frame_meter_sums_continuations_across_reads(step):
    fits = HeadersFrame(1, data=b"a" * 50).serialize()  # END_HEADERS absent
    fits += ContinuationFrame(1, data=b"b" * 40, flags=["END_HEADERS"]).serialize()
    fits += HeadersFrame(3, data=b"c" * 100, flags=["END_HEADERS"]).serialize()
    meter = FrameMeter(Http2Limits(max_header_block=100))
    feed(meter, PREFACE + fits, step)
    with pytest.raises(Flood, match="header block over 100 bytes"):
        feed(meter, HeadersFrame(5, data=b"c" * 60).serialize() + ContinuationFrame(5, data=b"d" * 50).serialize(), step)


BUDGETS = {
    "PRIORITY": (PriorityFrame(1, depends_on=0), "max_priority_frames"),
    "RST_STREAM": (RstStreamFrame(1), "max_reset_frames"),
    "empty DATA": (DataFrame(1, data=b""), "max_empty_data_frames"),
    "empty DATA, padded": (DataFrame(1, data=b"", flags=["PADDED"], pad_length=20), "max_empty_data_frames"),
    "WINDOW_UPDATE": (WindowUpdateFrame(0, window_increment=1), "max_window_update_frames"),
    "SETTINGS": (SettingsFrame(0), "max_settings_frames"),
    "PING": (PingFrame(0), "max_ping_frames"),
    "CONTINUATION": (ContinuationFrame(1, data=b""), "max_continuation_frames"),
    "unknown-type": (ExtensionFrame(0x42, 0, 0, b""), "max_unknown_frames"),
}


@pytest.mark.parametrize("step", [5, 4096], ids=["split", "whole"])
@pytest.mark.parametrize("name", list(BUDGETS))
def test_each_free_frame_type_has_a_budget_that_refills_over_the_window(name, step):
    frame, field = BUDGETS[name]
    limits = Http2Limits(**{field: 10}, frame_budget_window=10.0)
    meter = FrameMeter(limits)
    burst = PREFACE + (HeadersFrame(1, data=b"x").serialize() if name == "CONTINUATION" else b"") + frame.serialize() * 10
    feed(meter, burst, step)
    feed(meter, frame.serialize() * 5, step, now=5.0)  # half the window later: half the budget back
    with pytest.raises(Flood, match=name.split(",")[0]):
        feed(meter, frame.serialize(), step, now=5.0)


def test_frames_that_carry_work_spend_no_budget():
    meter = FrameMeter(Http2Limits(max_empty_data_frames=1, max_window_update_frames=1))
    ended = DataFrame(1, data=b"", flags=["END_STREAM"]).serialize()
    padded = DataFrame(1, data=b"abc", flags=["PADDED"], pad_length=5).serialize()
    feed(meter, PREFACE + (ended + padded + DataFrame(1, data=b"z").serialize()) * 50, 3)
    update = WindowUpdateFrame(1, window_increment=1024).serialize()
    feed(meter, update, 9, data_sent=0)
    for sent in range(1, 50):  # each KiB the edge sends pays for one WINDOW_UPDATE
        feed(meter, update, 9, data_sent=sent * 1024)
    with pytest.raises(Flood, match="WINDOW_UPDATE"):
        feed(meter, update * 2, 9, data_sent=49 * 1024)


def test_a_header_block_and_a_begun_frame_header_must_end_in_time():
    meter = FrameMeter(Http2Limits(header_block_timeout=10.0))
    feed(meter, PREFACE + PingFrame(0).serialize(), 4096, now=1.0)
    assert meter.deadline == math.inf
    feed(meter, HeadersFrame(1, data=b"x").serialize()[:5], 4096, now=2.0)  # half a frame header
    assert meter.deadline == 12.0
    feed(meter, HeadersFrame(1, data=b"x").serialize()[5:], 4096, now=3.0)
    for now in (5.0, 8.0):
        feed(meter, ContinuationFrame(1, data=b"y").serialize(), 4096, now=now)
        assert meter.deadline == 12.0  # the whole block: from its first byte
    last = ContinuationFrame(1, data=b"zz", flags=["END_HEADERS"]).serialize()
    feed(meter, last[:-1], 4096, now=9.0)
    assert meter.deadline == 12.0  # the last fragment's payload still under way
    feed(meter, last[-1:] + DataFrame(1, data=b"body" * 100).serialize()[:20], 4096, now=9.5)
    assert meter.deadline == math.inf  # DATA payloads have timers of their own


def test_frame_meter_cuts_reads_into_pieces_of_at_most_100_frames():
    frames = PingFrame(0).serialize() * 250  # 17 bytes each
    meter = FrameMeter(Http2Limits(max_ping_frames=1000))
    pieces = meter.feed(PREFACE + frames[:-5], 0.0, 0)
    assert b"".join(pieces) == PREFACE + frames[:-5]
    assert [len(p) for p in pieces] == [len(PREFACE) + 100 * 17, 100 * 17, 50 * 17 - 5]
    assert meter.feed(frames[-5:], 0.0, 0) == [frames[-5:]]


def test_leaky_bucket_waits_and_credits():
    bucket = LeakyBucket(2, 1.0)
    assert bucket.add(0.0) and bucket.add(0.0) and bucket.wait(0.0) == 0.5
    assert not bucket.add(0.0)
    assert bucket.wait(1.0) == 0.0
    bucket.credit(5)
    assert bucket.add(1.0) and bucket.add(1.0)


async def test_held_responses_arrive_whole_small_or_beyond_the_flow_control_window():
    async def held(exchange):
        exchange.hold()  # as the proxy does when the tunnel delivered the whole response
        await app(exchange)

    async with connect(handler=held) as client:
        small = await client.request("/small")
        large = await client.request(f"/download?{MIB}")
    assert small.status == 200 and small.json()["target"] == "/small"
    assert large.body == (bytes(range(256)) * 256 * 16)[:MIB]
