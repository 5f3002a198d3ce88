"""The trio tunnel transport over in-memory streams: bodies, flow control, resets, liveness."""

import hashlib
import os

import pytest
import trio
import trio.testing

from shared import protocol
from shared.aio import single_errors
from shared.errors import ProtocolError
from shared.events import RequestHead, ResponseHead
from shared.relay import relay
from shared.transport import TunnelConnection
from shared.tunnel_stream import StreamResetError
from tests.tls_pair import tls_socket_pair


async def echo_handler(stream):
    """Answer with the request's path in a header and its body echoed back."""
    await stream.send_response(ResponseHead(200, ((b"x-path", stream.head.target),)))
    while chunk := await stream.receive():
        await stream.send(chunk)
    await stream.end()


def connection_pair(stream_pair=trio.testing.memory_stream_pair, **kwargs):
    edge_side, connector_side = stream_pair()
    edge = TunnelConnection(edge_side, protocol.TunnelSession("edge"), **kwargs)
    connector = TunnelConnection(connector_side, protocol.TunnelSession("connector"), **kwargs)
    return edge, connector


def head(path=b"/", has_body=True):
    return RequestHead(b"POST", path, b"app.example.test", b"https", (), has_body)


async def exchange(edge, path, body):
    async def upload(stream):
        for start in range(0, len(body), 100_000):
            await stream.send(body[start : start + 100_000])
        await stream.end()

    async with await edge.open_stream(head(path)) as stream:
        with single_errors():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(upload, stream)
                response = await stream.receive_response()
                received = bytearray()
                while chunk := await stream.receive():
                    received += chunk
    return response, bytes(received)


async def test_request_and_body_echo_through_flow_control():
    edge, connector = connection_pair()
    body = os.urandom(5 * 1024 * 1024)  # several stream windows
    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, echo_handler)
        response, received = await exchange(edge, b"/big", body)
        assert response.status == 200
        assert response.header(b"x-path") == b"/big"
        assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
        assert edge.active_streams == 0
        nursery.cancel_scope.cancel()


async def test_streams_count_body_bytes_each_way():
    edge, connector = connection_pair()
    served = []

    async def counted_echo(stream):
        served.append(stream)
        await echo_handler(stream)

    body = os.urandom(300_000)  # more than one stream window
    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, counted_echo)
        await exchange(edge, b"/counted", body)
        nursery.cancel_scope.cancel()
    [stream] = served
    assert (stream.bytes_received, stream.bytes_sent) == (len(body), len(body))


async def test_a_tunnel_over_tls_carries_bodies_and_answers():
    client, server = await tls_socket_pair()
    edge, connector = connection_pair(lambda: (client, server))
    body = os.urandom(3 * 1024 * 1024)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, echo_handler)
        async with trio.open_nursery() as clients:
            for i in range(20):
                clients.start_soon(exchange, edge, f"/{i}".encode(), f"id={i}".encode())
        response, received = await exchange(edge, b"/big", body)
        assert response.header(b"x-path") == b"/big" and received == body
        nursery.cancel_scope.cancel()


async def test_many_concurrent_streams_get_their_own_answers():
    edge, connector = connection_pair()
    results = {}

    async def one(i):
        response, body = await exchange(edge, f"/{i}".encode(), f"id={i}".encode())
        results[i] = (response.header(b"x-path"), body)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, echo_handler)
        async with trio.open_nursery() as clients:
            for i in range(200):
                clients.start_soon(one, i)
        nursery.cancel_scope.cancel()
    assert results == {i: (f"/{i}".encode(), f"id={i}".encode()) for i in range(200)}


async def test_handler_failure_resets_only_its_stream():
    async def handler(stream):
        if stream.head.target == b"/boom":
            raise ProtocolError("origin went away")
        await echo_handler(stream)

    edge, connector = connection_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, handler)
        with pytest.raises(StreamResetError):
            await exchange(edge, b"/boom", b"x")
        response, body = await exchange(edge, b"/ok", b"fine")
        assert (response.status, body) == (200, b"fine")
        nursery.cancel_scope.cancel()


async def test_body_that_arrived_before_a_reset_is_received_first():
    async def partial(stream):
        await stream.send_response(ResponseHead(200))
        await stream.send(b"partial")
        raise ProtocolError("origin went away mid-body")

    edge, connector = connection_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, partial)
        async with await edge.open_stream(head(has_body=False)) as stream:
            assert (await stream.receive_response()).status == 200
            await trio.testing.wait_all_tasks_blocked()  # the body and the reset both arrived
            assert await stream.receive() == b"partial"
            with pytest.raises(StreamResetError):
                await stream.receive()
        nursery.cancel_scope.cancel()


async def test_receive_joins_the_chunks_already_queued_up_to_a_bound():
    chunks = [bytes([i]) * 50_000 for i in range(12)]  # 600,000 bytes, more than one RECEIVE_BATCH

    async def download(stream):
        await stream.send_response(ResponseHead(200))
        for chunk in chunks:
            await stream.send(chunk)
        await stream.end()

    edge, connector = connection_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, download)
        async with await edge.open_stream(head(has_body=False)) as stream:
            await stream.receive_response()
            while not stream.remote_closed:
                await trio.testing.wait_all_tasks_blocked()
            pieces = []
            while piece := await stream.receive():
                pieces.append(piece)
            assert b"".join(pieces) == b"".join(chunks)
            assert [len(piece) for piece in pieces] == [250_000, 250_000, 100_000]  # ≤ RECEIVE_BATCH each
            assert stream.bytes_received == 600_000
        _, received = await exchange(edge, b"/again", b"")  # unbatched reads give the same bytes
        assert received == b"".join(chunks)
        nursery.cancel_scope.cancel()


async def test_bodies_delivered_whole_and_never_read_give_their_credit_back():
    body = b"x" * (3 * 1024 * 1024)

    async def download(stream):
        await stream.send_response(ResponseHead(200))
        await stream.send(body[: protocol.STREAM_WINDOW])  # a whole stream window, then the end
        await stream.end()

    edge, connector = connection_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, download)
        for i in range(2 * protocol.CONNECTION_WINDOW // protocol.STREAM_WINDOW):  # twice the session's window
            with trio.fail_after(5):
                async with await edge.open_stream(head(f"/{i}".encode(), has_body=False)) as stream:
                    await stream.receive_response()
                    while not stream.remote_closed:
                        await trio.testing.wait_all_tasks_blocked()
        response, received = await exchange(edge, b"/last", b"")  # the session still carries bodies
        assert response.status == 200 and received == body[: protocol.STREAM_WINDOW]
        nursery.cancel_scope.cancel()


async def test_a_body_that_arrived_whole_is_read_after_the_session_ended():
    async def answer(stream):
        await stream.send_response(ResponseHead(200))
        await stream.send(b"all of it")
        await stream.end()

    edge, connector = connection_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, answer)
        stream = await edge.open_stream(head(has_body=False))
        await stream.receive_response()
        while not stream.remote_closed:
            await trio.testing.wait_all_tasks_blocked()
        await connector.drain(1)  # the connector goes away gracefully before the edge read the body
        await trio.testing.wait_all_tasks_blocked()
        assert edge._error is not None
        assert await stream.receive() == b"all of it"
        assert await stream.receive() == b""
        nursery.cancel_scope.cancel()


async def test_silent_peer_fails_the_session_after_ping_timeout(autojump_clock):
    edge_side, _silent = trio.testing.memory_stream_pair()
    edge = TunnelConnection(edge_side, protocol.TunnelSession("edge"), ping_interval=1, ping_timeout=2)
    with pytest.raises(ProtocolError, match="PING"):
        await edge.serve()
    with pytest.raises(ProtocolError):
        await edge.open_stream(head())


async def test_peer_loss_fails_waiting_streams():
    edge, connector = connection_pair()

    async def stall(stream):
        await trio.sleep_forever()

    async def expect_failure(connection, *args):
        with pytest.raises(ProtocolError):
            await connection.serve(*args)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(expect_failure, connector, stall)
        nursery.start_soon(expect_failure, edge)
        stream = await edge.open_stream(head(has_body=False))
        await trio.testing.wait_all_tasks_blocked()
        await trio.aclose_forcefully(connector.transport)
        with pytest.raises(ProtocolError):
            await stream.receive_response()
        nursery.cancel_scope.cancel()


async def test_a_cancelled_caller_opens_no_stream():
    edge, connector = connection_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, echo_handler)
        with trio.CancelScope() as scope:
            scope.cancel()
            await edge.open_stream(head(b"/never"))
        assert scope.cancelled_caught and edge.active_streams == 0
        await trio.testing.wait_all_tasks_blocked()
        assert connector.active_streams == 0 and edge.session.data_to_send() == b""
        nursery.cancel_scope.cancel()


async def test_drain_lets_open_streams_finish():
    edge, connector = connection_pair()
    release = trio.Event()

    async def slow(stream):
        await release.wait()
        await stream.send_response(ResponseHead(204, has_body=False))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, slow)
        stream = await edge.open_stream(head(has_body=False))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(connector.drain, 5)
        await trio.testing.wait_all_tasks_blocked()
        assert not edge.accepting
        release.set()
        assert (await stream.receive_response()).status == 204
        nursery.cancel_scope.cancel()


async def test_drain_serves_a_stream_the_peer_opened_before_it_saw_the_drain():
    edge, connector = connection_pair()

    async def answer(stream):
        await stream.send_response(ResponseHead(204, has_body=False))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, answer)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(connector.drain, 5)  # nothing open yet on the connector's side
        stream = await edge.open_stream(head(has_body=False))  # crosses the drain PING on the wire
        assert (await stream.receive_response()).status == 204
        nursery.cancel_scope.cancel()


async def test_trailers_cross_the_tunnel_both_ways():
    async def handler(stream):
        assert await stream.receive() == b"request"
        assert await stream.receive() == b""
        assert stream.trailers == ((b"x-request-trailer", b"1"),)
        await stream.send_response(ResponseHead(200, ((b"content-type", b"application/grpc"),)))
        await stream.send(b"reply")
        await stream.send_trailers(((b"grpc-status", b"0"), (b"grpc-message", b"fine")))

    edge, connector = connection_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, handler)
        async with await edge.open_stream(head(b"/rpc")) as stream:
            await stream.send(b"request")
            await stream.send_trailers(((b"x-request-trailer", b"1"),))
            assert (await stream.receive_response()).status == 200
            assert await stream.receive() == b"reply"
            assert await stream.receive() == b""
            assert stream.trailers == ((b"grpc-status", b"0"), (b"grpc-message", b"fine"))
        nursery.cancel_scope.cancel()


async def test_upgrade_stream_stays_open_as_a_byte_pipe():
    async def handler(stream):
        assert stream.kind == protocol.KIND_UPGRADE
        await stream.send_response(ResponseHead(101, ((b"upgrade", b"websocket"),)))
        while chunk := await stream.receive():
            await stream.send(chunk.upper())
        await stream.end()

    edge, connector = connection_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, handler)
        async with await edge.open_stream(head(b"/ws", has_body=False), protocol.KIND_UPGRADE) as stream:
            assert (await stream.receive_response()).status == 101
            for word in (b"ping", b"pong"):
                await stream.send(word)
                assert await stream.receive() == word.upper()
            await stream.end()
            assert await stream.receive() == b""
        nursery.cancel_scope.cancel()


async def _upgraded(edge, connector_side, nursery, handler):
    nursery.start_soon(edge.serve)
    nursery.start_soon(connector_side.serve, handler)
    stream = await edge.open_stream(head(b"/", has_body=False), protocol.KIND_UPGRADE)
    assert (await stream.receive_response()).status == 101
    return stream


async def test_relay_carries_bytes_and_half_closes_both_ways():
    local, remote = trio.testing.memory_stream_pair()  # the socket side is half-closeable

    async def handler(stream):
        await stream.send_response(ResponseHead(101))
        while chunk := await stream.receive():
            await stream.send(chunk.upper())
        await stream.end()

    edge, connector = connection_pair()
    async with trio.open_nursery() as nursery:
        stream = await _upgraded(edge, connector, nursery, handler)
        async with stream:
            nursery.start_soon(relay, remote, stream, b"first ")
            await local.send_all(b"second")
            await local.send_eof()
            received = b""
            while data := await local.receive_some():
                received += data
            assert received == b"FIRST SECOND"
        nursery.cancel_scope.cancel()


async def test_relay_closes_an_idle_pipe(autojump_clock):
    local, remote = trio.testing.memory_stream_pair()

    async def handler(stream):
        await stream.send_response(ResponseHead(101))
        await trio.sleep_forever()

    edge, connector = connection_pair()
    async with trio.open_nursery() as nursery:
        stream = await _upgraded(edge, connector, nursery, handler)
        async with stream:
            start = trio.current_time()
            await relay(remote, stream, idle_timeout=30.0)
            assert 30.0 <= trio.current_time() - start < 31.0
        nursery.cancel_scope.cancel()
