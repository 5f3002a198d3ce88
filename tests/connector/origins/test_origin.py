"""connector/origin.py (HTTP/1.1 origins) against a scripted loopback origin, through a real tunnel pair."""

from __future__ import annotations

import functools

import h11
import pytest
import trio
import trio.testing

from connector.ingress.rules import Ingress
from connector.tunnel.streams import StreamServer
from shared import protocol
from shared.events import RequestHead
from shared.transport import TunnelConnection

HOST = b"app.example.test"
BIG = bytes(range(256)) * 4096 * 3  # 3 MiB: several origin reads and tunnel windows


class Origin:
    """Answers each request with `respond(request, body)`: (status, headers, body) through h11 on a
    kept-alive connection, or raw bytes after which the connection closes. Records what it received."""

    def __init__(self, respond) -> None:
        self.respond = respond
        self.connections = 0
        self.requests: list[tuple[h11.Request, bytes]] = []

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        request, body = None, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.requests.append((request, bytes(body)))
                answer = self.respond(request, bytes(body))
                if isinstance(answer, bytes):
                    await stream.send_all(answer)
                    return
                status, headers, content = answer
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
                await stream.send_all(conn.send(h11.Data(data=content)) + conn.send(h11.EndOfMessage()))
                conn.start_next_cycle()
                request, body = None, bytearray()


async def exchange(nursery, origin: Origin, head: RequestHead, body: bytes = b"") -> tuple[int, dict, bytes]:
    """One request through edge → tunnel → StreamServer → origin; (status, headers, body) as the edge sees them."""
    listeners = await nursery.start(functools.partial(trio.serve_tcp, origin.handle, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    ingress = Ingress.from_rules([{"hostname": HOST.decode(), "service": f"http://127.0.0.1:{port}"}, {"service": "http_status:404"}])
    server = StreamServer(ingress)
    edge_side, connector_side = trio.testing.memory_stream_pair()
    edge = TunnelConnection(edge_side, protocol.TunnelSession("edge"))
    connector = TunnelConnection(connector_side, protocol.TunnelSession("connector"))
    nursery.start_soon(edge.serve)
    nursery.start_soon(connector.serve, server.serve)
    results = []
    for _ in range(2):  # twice: the second request goes over the kept-alive origin connection
        async with await edge.open_stream(head) as stream:
            if head.has_body:
                await stream.send(body)
                await stream.end()
            response = await stream.receive_response()
            received = bytearray()
            while chunk := await stream.receive():
                received += chunk
            results.append((response.status, dict(response.headers), bytes(received)))
    assert results[0] == results[1]
    return results[0]


def get(target: bytes = b"/", *extra) -> RequestHead:
    return RequestHead(b"GET", target, HOST, headers=((b"host", HOST), *extra))


async def test_bodiless_requests_reuse_one_origin_connection_and_stream_a_large_body_back():
    origin = Origin(lambda request, body: (200, [(b"content-length", str(len(BIG)).encode()), (b"x-origin", b"1")], BIG))
    async with trio.open_nursery() as nursery:
        status, headers, body = await exchange(nursery, origin, get(b"/big", (b"x-visitor", b"v")))
        nursery.cancel_scope.cancel()
    assert (status, headers[b"x-origin"], body == BIG) == (200, b"1", True)
    assert origin.connections == 1
    (request, sent), _ = origin.requests
    assert (request.method, request.target, sent) == (b"GET", b"/big", b"")
    assert (b"x-visitor", b"v") in list(request.headers)


@pytest.mark.parametrize("length", [True, False])
async def test_request_body_reaches_the_origin_whole(length):
    def respond(request, body):
        return 201, [(b"content-length", b"2")], b"ok"

    extra = ((b"content-length", str(len(BIG)).encode()),) if length else ()
    head = RequestHead(b"PUT", b"/sink", HOST, headers=((b"host", HOST), *extra), has_body=True)
    origin = Origin(respond)
    async with trio.open_nursery() as nursery:
        assert await exchange(nursery, origin, head, BIG) == (201, {b"content-length": b"2"}, b"ok")
        nursery.cancel_scope.cancel()
    for request, body in origin.requests:
        framing = dict(request.headers)
        assert body == BIG
        assert framing.get(b"content-length" if length else b"transfer-encoding") == (
            str(len(BIG)).encode() if length else b"chunked"
        )


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",  # conflicting lengths
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nok",  # space in a header name
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",  # a coding other than chunked
    ],
)
async def test_an_invalid_origin_response_is_a_502_and_never_relayed(raw):
    origin = Origin(lambda request, body: raw)
    async with trio.open_nursery() as nursery:
        status, _, body = await exchange(nursery, origin, get())
        nursery.cancel_scope.cancel()
    assert status == 502
    assert b"invalid response" in body


async def test_a_get_on_a_kept_alive_connection_the_origin_closed_is_sent_again_on_a_new_one():
    origin = Origin(lambda request, body: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # then closes
    async with trio.open_nursery() as nursery:
        assert await exchange(nursery, origin, get()) == (200, {b"content-length": b"2"}, b"ok")
        nursery.cancel_scope.cancel()
    assert origin.connections == 2
