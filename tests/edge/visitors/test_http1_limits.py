"""HTTP/1.1 timers against slow visitors: keep-alive idle, head timeout from the first byte,
and the minimum request-body data rate."""

import trio
import trio.testing

from edge.visitors.http1 import Http1Connection, Http1Limits
from shared.events import ResponseHead


async def read_all(exchange):
    while await exchange.receive_body():
        pass
    await exchange.send_response(ResponseHead(200, ((b"content-length", b"0"),)))
    await exchange.end()


async def serve_dripping(limits: Http1Limits, head: bytes, drip: bytes, every: float) -> tuple[float, bytes]:
    """Send `head` at once, then `drip` one byte per `every` seconds; return when the edge
    closed the connection and what it answered."""
    client, server = trio.testing.memory_stream_pair()
    connection = Http1Connection(server, ("127.0.0.1", 5), ("127.0.0.1", 443), limits)
    received = bytearray()

    async def run_server():
        await connection.serve(read_all)
        await server.aclose()

    async def feed():
        try:
            await client.send_all(head)
            for byte in drip:
                await trio.sleep(every)
                await client.send_all(bytes([byte]))
        except trio.BrokenResourceError:  # the edge closed first, at the same instant as a drip
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_server)
        nursery.start_soon(feed)
        while data := await client.receive_some(65536):
            received += data
        closed_at = trio.current_time()
        nursery.cancel_scope.cancel()
    return closed_at, bytes(received)


async def test_a_body_dripped_below_the_minimum_rate_is_cut(autojump_clock):
    limits = Http1Limits(body_min_rate=100, body_rate_grace=5)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    closed_at, answer = await serve_dripping(limits, head, b"x" * 1000, every=1.0)
    assert 5 <= closed_at < 10  # the grace plus a byte's worth, far below the 60 s idle timeout
    assert b"200" not in answer


async def test_a_body_at_a_steady_rate_completes(autojump_clock):
    limits = Http1Limits(body_min_rate=100, body_rate_grace=5)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n"
    closed_at, answer = await serve_dripping(limits, head + b"x" * 100, b"x" * 200, every=0.005)
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_a_head_dripped_after_keep_alive_is_cut_at_the_head_timeout(autojump_clock):
    limits = Http1Limits(request_head_timeout=3, keepalive_timeout=30)
    first = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    closed_at, answer = await serve_dripping(limits, first, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n", every=1.0)
    assert answer.count(b"HTTP/1.1 200 ") == 1
    assert 3 <= closed_at < 6


async def test_an_idle_kept_alive_connection_closes_at_the_keepalive_timeout(autojump_clock):
    limits = Http1Limits(request_head_timeout=3, keepalive_timeout=30)
    closed_at, answer = await serve_dripping(limits, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", b"", every=1.0)
    assert answer.count(b"HTTP/1.1 200 ") == 1
    assert 30 <= closed_at < 31
