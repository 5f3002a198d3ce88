"""The HTTP/1.1 visitor adapter: keep-alive, limits and malformed requests."""

import pytest
import trio
import trio.testing

from edge.http1 import Http1Connection, Http1Limits
from shared.events import ResponseHead


async def echo(exchange):
    body = bytearray()
    while chunk := await exchange.receive_body():
        body += chunk
    payload = exchange.head.method + b" " + exchange.head.target + b" " + bytes(body)
    await exchange.send_response(ResponseHead(200, ((b"content-length", str(len(payload)).encode()),)))
    await exchange.send_body(payload)
    await exchange.end()


async def converse(request: bytes, limits=Http1Limits()) -> bytes:
    """Send raw bytes as a visitor; return everything the server wrote until it closed."""
    client, server = trio.testing.memory_stream_pair()
    connection = Http1Connection(server, ("127.0.0.1", 5), ("127.0.0.1", 443), limits)
    received = bytearray()

    async def run_server():
        await connection.serve(echo)
        await server.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_server)
        await client.send_all(request)
        await client.send_eof() if hasattr(client, "send_eof") else None
        while data := await client.receive_some(65536):
            received += data
    return bytes(received)


async def test_keep_alive_serves_several_requests_with_bodies():
    answer = await converse(
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    )
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert b"POST /a abc" in answer and b"GET /b?q=1 " in answer and b"POST /c hi" in answer


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
    ],
    ids=["too-many-fields", "head-too-large", "garbage", "no-host"],
)
async def test_bad_requests_get_a_status_page(request_bytes, status):
    answer = await converse(request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert b"burrow-error: edge" in answer


async def test_silent_visitor_is_dropped_after_the_head_timeout(autojump_clock):
    client, server = trio.testing.memory_stream_pair()
    connection = Http1Connection(server, ("127.0.0.1", 5), ("127.0.0.1", 443), Http1Limits(request_head_timeout=3))
    with trio.fail_after(5):
        await connection.serve(echo)
    assert trio.current_time() >= 3


async def test_an_invalid_response_head_from_the_tunnel_is_a_protocol_error():
    from edge.http1 import Http1Exchange
    from shared.errors import ProtocolError
    from shared.events import RequestHead

    client, server = trio.testing.memory_stream_pair()
    connection = Http1Connection(server, ("127.0.0.1", 5), ("127.0.0.1", 443), Http1Limits())
    await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await connection.next_event(1)
    exchange = Http1Exchange(connection, RequestHead(b"GET", b"/", b"x"))
    with pytest.raises(ProtocolError):
        await exchange.send_response(ResponseHead(200, ((b"bad header", b"v"),)))
    assert not exchange.response_started
