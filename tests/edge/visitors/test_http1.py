"""The HTTP/1.1 visitor adapter: keep-alive, limits and malformed requests."""

import pytest
import trio
import trio.testing

from edge.visitors.http1 import Http1Connection, Http1Limits
from shared.events import ResponseHead


async def echo(exchange):
    body = bytearray()
    while chunk := await exchange.receive_body():
        body += chunk
    payload = exchange.head.method + b" " + exchange.head.target + b" " + bytes(body)
    await exchange.send_response(ResponseHead(200, ((b"content-length", str(len(payload)).encode()),)))
    await exchange.send_body(payload)
    await exchange.end()


async def converse(request: bytes, limits=Http1Limits(), handler=echo, wrap=lambda stream: stream, later: bytes = b"") -> bytes:
    """Send raw bytes as a visitor (`later` in a second write, once the server read the
    first); return everything the server wrote until it closed (`wrap` may wrap the
    server's side of the connection, e.g. to count its writes)."""
    client, server = trio.testing.memory_stream_pair()
    server = wrap(server)
    connection = Http1Connection(server, ("127.0.0.1", 5), ("127.0.0.1", 443), limits)
    received = bytearray()

    async def run_server():
        await connection.serve(handler)
        await server.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_server)
        await client.send_all(request)
        if later:
            await trio.testing.wait_all_tasks_blocked()
            await client.send_all(later)
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
    from edge.visitors.http1 import Http1Exchange
    from shared.errors import ProtocolError
    from shared.events import RequestHead

    client, server = trio.testing.memory_stream_pair()
    connection = Http1Connection(server, ("127.0.0.1", 5), ("127.0.0.1", 443), Http1Limits())
    exchange = Http1Exchange(connection, RequestHead(b"GET", b"/", b"x"))
    with pytest.raises(ProtocolError):
        await exchange.send_response(ResponseHead(200, ((b"bad header", b"v"),)))
    assert not exchange.response_started


async def test_a_request_answered_without_reading_it_keeps_the_connection_alive():
    async def answer_only(exchange):
        await exchange.send_response(ResponseHead(204, has_body=False))
        await exchange.end()

    client, server = trio.testing.memory_stream_pair()
    connection = Http1Connection(server, ("127.0.0.1", 5), ("127.0.0.1", 443), Http1Limits())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.serve, answer_only)
        await client.send_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        received = b""
        with trio.fail_after(5):
            while received.count(b"204 No Content") < 2:
                data = await client.receive_some(65536)
                assert data, f"connection closed after {received!r}"
                received += data
        nursery.cancel_scope.cancel()


async def test_upgrade_hands_over_the_socket_with_bytes_already_read():
    client, server = trio.testing.memory_stream_pair()
    connection = Http1Connection(server, ("127.0.0.1", 5), ("127.0.0.1", 443), Http1Limits())

    async def switch(exchange):
        assert exchange.upgrade == b"websocket"
        raw, first = await exchange.switch_protocols(
            ResponseHead(101, ((b"connection", b"upgrade"), (b"upgrade", b"websocket")))
        )
        await raw.send_all(b"got:" + first)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.serve, switch)
        await client.send_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\nearly"
        )
        received = b""
        while b"got:" not in received:
            received += await client.receive_some(65536)
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"upgrade: websocket" in head.lower()
    assert rest == b"got:early"


async def test_upgrade_answered_normally_keeps_http():
    async def refuse(exchange):
        assert exchange.upgrade == b"websocket"
        await exchange.send_response(ResponseHead(403, ((b"content-length", b"0"),)))
        await exchange.end()

    client, server = trio.testing.memory_stream_pair()
    connection = Http1Connection(server, ("127.0.0.1", 5), ("127.0.0.1", 443), Http1Limits())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.serve, refuse)
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            received += await client.receive_some(65536)
        assert received.startswith(b"HTTP/1.1 403 ")
        nursery.cancel_scope.cancel()


class CountedWrites(trio.abc.Stream):
    """A stream that records each `send_all`."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.writes: list[bytes] = []

    async def send_all(self, data) -> None:
        self.writes.append(bytes(data))
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes=None) -> bytes:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def held_conversation(handler) -> tuple[list[bytes], bytes]:
    """One GET answered by `handler`: the server's writes, and what the visitor received."""
    writes: list[bytes] = []

    def counted(stream):
        counted = CountedWrites(stream)
        counted.writes = writes
        return counted

    received = await converse(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", handler=handler, wrap=counted)
    return writes, received


async def test_a_held_response_is_written_once_at_its_end():
    async def held(exchange):
        exchange.hold()
        await exchange.send_response(ResponseHead(200, ((b"content-length", b"4"),)))
        await exchange.send_body(b"ab")
        await exchange.send_body(b"cd")
        await exchange.end()

    writes, received = await held_conversation(held)
    assert len(writes) == 1 and received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"\r\n\r\nabcd")


async def test_a_released_response_is_written_as_far_as_it_got():
    async def gives_up(exchange):  # as the proxy does when the tunnel fails midway
        exchange.hold()
        await exchange.send_response(ResponseHead(200, ((b"content-length", b"4"),)))
        await exchange.send_body(b"ab")
        await exchange.release()

    writes, received = await held_conversation(gives_up)
    assert len(writes) == 1 and received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"\r\n\r\nab")


CHUNKED = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("body", [b"0x5\r\nhello\r\n0\r\n\r\n", b"5;a\nb\r\nhello\r\n0\r\n\r\n"], ids=["0x-size", "lf-in-extension"])
async def test_bad_chunked_framing_with_the_head_is_refused_before_the_handler(body):
    seen = []

    async def handler(exchange):
        seen.append(exchange)

    answer = await converse(CHUNKED + body + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n", handler=handler)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"connection: close" in answer
    assert answer.count(b"HTTP/1.1") == 1 and not seen


async def test_bad_chunked_framing_later_in_the_body_gets_400_before_the_response():
    answer = await converse(CHUNKED + b"5\r\nhello\r\n", later=b"2 \r\nab\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"malformed chunk-size line" in answer


async def test_expect_100_continue_is_answered_once_when_the_body_is_read():
    answer = await converse(
        b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n", later=b"hi"
    )
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n") and answer.endswith(b"POST /e hi")
