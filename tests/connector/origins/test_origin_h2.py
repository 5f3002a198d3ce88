"""connector/origin_h2.py against a real h2 server on loopback, through a real tunnel pair."""

from __future__ import annotations

import functools

import h2.config
import h2.connection
import h2.events
import pytest
import trio
import trio.testing

from connector.ingress.origin_request import OriginRequest
from connector.ingress.services import HttpService
from connector.origins.errors import OriginRefused
from connector.origins.http2 import forward_h2, request_fields
from shared import protocol
from shared.errors import OriginError
from shared.events import RequestHead
from shared.transport import TunnelConnection

OPTIONS = OriginRequest(http2_origin=True, connect_timeout=2.0)


def connection_pair():
    edge_side, connector_side = trio.testing.memory_stream_pair()
    edge = TunnelConnection(edge_side, protocol.TunnelSession("edge"))
    connector = TunnelConnection(connector_side, protocol.TunnelSession("connector"))
    return edge, connector


async def h2_origin(server_stream: trio.SocketStream, seen: list) -> None:
    """Echo the body upper-cased in 16 kB chunks, then trailers naming the request's trailers."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    conn.initiate_connection()
    await server_stream.send_all(conn.data_to_send())
    body, request_trailers = bytearray(), ()
    while True:
        data = await server_stream.receive_some(65536)
        if not data:
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                seen.append(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived):
                request_trailers = event.headers
            elif isinstance(event, h2.events.StreamEnded):
                sid = event.stream_id
                conn.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
                await server_stream.send_all(conn.data_to_send())
                reply = bytes(body).upper()
                for start in range(0, len(reply), 16_000):
                    while conn.local_flow_control_window(sid) < min(16_000, len(reply) - start):
                        more = await server_stream.receive_some(65536)
                        conn.receive_data(more)
                    conn.send_data(sid, reply[start : start + 16_000])
                    await server_stream.send_all(conn.data_to_send())
                echoed = dict(request_trailers).get(b"x-client-trailer", b"none")
                conn.send_headers(sid, [(b"grpc-status", b"0"), (b"x-echoed", echoed)], end_stream=True)
        await server_stream.send_all(conn.data_to_send())


async def serve_origin(nursery, seen):
    listeners = await nursery.start(functools.partial(trio.serve_tcp, lambda s: h2_origin(s, seen), 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


def grpc_head(has_body=True):
    headers = ((b"host", b"grpc.example.test"), (b"te", b"trailers"), (b"content-type", b"application/grpc"),
               (b"connection", b"x-drop"), (b"x-drop", b"1"))
    return RequestHead(b"POST", b"/pkg.Svc/Call", b"grpc.example.test", b"https", headers, has_body)


async def test_body_and_trailers_cross_both_ways_with_flow_control():
    seen = []
    async with trio.open_nursery() as nursery:
        port = await serve_origin(nursery, seen)
        service = HttpService("http", "127.0.0.1", port)
        edge, connector = connection_pair()
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, lambda stream: forward_h2(stream, service, OPTIONS))
        payload = b"abc" * 200_000  # 600 kB: several windows each way
        async with await edge.open_stream(grpc_head()) as stream:
            async def upload():
                for start in range(0, len(payload), 50_000):
                    await stream.send(payload[start : start + 50_000])
                await stream.send_trailers(((b"x-client-trailer", b"yes"),))

            nursery.start_soon(upload)
            response = await stream.receive_response()
            assert response.status == 200
            assert response.header(b"content-type") == b"application/grpc"
            received = bytearray()
            while chunk := await stream.receive():
                received += chunk
            assert received == payload.upper()
            assert stream.trailers == ((b"grpc-status", b"0"), (b"x-echoed", b"yes"))
        nursery.cancel_scope.cancel()
    headers = dict(seen[0])
    assert headers[b":authority"] == b"grpc.example.test"
    assert headers[b":scheme"] == b"http"
    assert headers[b"te"] == b"trailers"
    assert b"host" not in headers and b"x-drop" not in headers and b"connection" not in headers


def test_request_fields_with_host_header_override():
    fields = request_fields(grpc_head(), OriginRequest(http_host_header="internal.example"), b"https")
    assert fields[:4] == [
        (b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"internal.example"), (b":path", b"/pkg.Svc/Call"),
    ]
    assert (b"x-forwarded-host", b"grpc.example.test") in fields


async def test_refused_origin_is_an_origin_error():
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    edge, connector = connection_pair()
    errors = []

    async def handler(stream):
        try:
            await forward_h2(stream, HttpService("http", "127.0.0.1", port), OPTIONS)
        except OriginError as exc:
            errors.append(exc)
            raise

    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, handler)
        async with await edge.open_stream(grpc_head(has_body=False)) as stream:
            with pytest.raises(Exception):
                await stream.receive_response()
        nursery.cancel_scope.cancel()
    assert errors and "unreachable" in str(errors[0]) and isinstance(errors[0], OriginRefused)
