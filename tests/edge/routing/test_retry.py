"""Retrying a request on another session: only when the first session provably never took
it, and only for idempotent requests without a body (DESIGN §6, "nothing lost" point 2).

Sessions run over real loopback TCP sockets; the connector side counts what its
handler (standing in for the origin) received.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from edge.dns.zone import Zones
from edge.routing.proxy import forward, pick_and_forward
from edge.routing.router import Router
from shared import protocol
from shared.errors import ProtocolError
from shared.events import RequestHead, ResponseHead
from shared.transport import TunnelConnection
from shared.tunnel_stream import StreamRefused, StreamResetError


class Exchange:
    """A visitor exchange that records the answer."""

    def __init__(self, head: RequestHead) -> None:
        self.head = head
        self.response_started = False
        self.request_trailers = ()
        self.status = 0
        self.body = bytearray()

    async def receive_body(self) -> bytes:
        return b""

    async def send_response(self, head: ResponseHead) -> None:
        self.response_started = True
        self.status = head.status

    async def send_body(self, data: bytes) -> None:
        self.body += data

    async def end(self) -> None:
        pass

    async def send_trailers(self, headers) -> None:
        pass


def request(method: bytes, has_body: bool = False) -> RequestHead:
    return RequestHead(method, b"/", b"app.example.test", b"https", (), has_body)


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    return client, server


class Origin:
    """A connector-side handler that counts every request that reached it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def __call__(self, stream) -> None:
        self.received.append(stream.head.method)
        while await stream.receive():
            pass
        if stream.head.method == b"HEAD":
            await stream.send_response(ResponseHead(200, (), has_body=False))
            return
        await stream.send_response(ResponseHead(200, (), has_body=True))
        await stream.send(b"served")
        await stream.end()


async def start_session(nursery: trio.Nursery, handler) -> TunnelConnection:
    """An edge-side session whose connector serves streams with `handler` (None: refuses them all)."""
    edge_side, connector_side = await tcp_pair()
    edge = TunnelConnection(edge_side, protocol.TunnelSession("edge"))
    connector = TunnelConnection(connector_side, protocol.TunnelSession("connector"))
    nursery.start_soon(until_lost, edge.serve)
    nursery.start_soon(until_lost, connector.serve, handler)
    return edge


async def until_lost(serve, *args) -> None:
    """Serve a session; its loss is what some tests are about, not an error of the test."""
    try:
        await serve(*args)
    except ProtocolError:
        pass


async def test_a_refused_get_is_served_by_another_session_and_a_post_is_never_replayed():
    origin = Origin()
    async with trio.open_nursery() as nursery:
        refusing = await start_session(nursery, None)
        serving = await start_session(nursery, origin)
        router = Router(Zones())
        router.add("t", refusing)  # picked first: both are idle and it is older
        router.add("t", serving)

        for method in (b"GET", b"HEAD", b"OPTIONS"):
            exchange = Exchange(request(method))
            await pick_and_forward(exchange, router, "t", exchange.head, forward)
            assert exchange.status == 200 and bytes(exchange.body) == (b"" if method == b"HEAD" else b"served")
        assert origin.received == [b"GET", b"HEAD", b"OPTIONS"]  # each exactly once

        for method, has_body in ((b"POST", False), (b"PUT", False), (b"PATCH", False), (b"GET", True)):
            exchange = Exchange(request(method, has_body))
            with pytest.raises(StreamRefused):
                await pick_and_forward(exchange, router, "t", exchange.head, forward)
            assert not exchange.response_started
        assert origin.received == [b"GET", b"HEAD", b"OPTIONS"]  # nothing replayed
        nursery.cancel_scope.cancel()


async def test_retries_stop_when_every_session_refused():
    async with trio.open_nursery() as nursery:
        router = Router(Zones())
        for _ in range(2):
            router.add("t", await start_session(nursery, None))
        exchange = Exchange(request(b"GET"))
        with pytest.raises(StreamRefused):
            await pick_and_forward(exchange, router, "t", exchange.head, forward)
        nursery.cancel_scope.cancel()


async def test_a_get_the_connector_took_is_not_replayed_when_its_session_dies():
    taken = trio.Event()
    origin = Origin()

    async def takes_then_dies(stream) -> None:
        taken.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        dying = await start_session(nursery, takes_then_dies)
        router = Router(Zones())
        router.add("t", dying)
        router.add("t", await start_session(nursery, origin))

        async def kill_when_taken() -> None:
            await taken.wait()
            await trio.aclose_forcefully(dying.transport)

        nursery.start_soon(kill_when_taken)
        exchange = Exchange(request(b"GET"))
        with pytest.raises(ProtocolError) as failed:
            await pick_and_forward(exchange, router, "t", exchange.head, forward)
        assert not isinstance(failed.value, StreamRefused)  # it may have reached the origin
        assert origin.received == []
        nursery.cancel_scope.cancel()


# The transport's part: which failures prove the peer never took the stream -------


def memory_pair(stream_pair=trio.testing.memory_stream_pair):
    edge_side, connector_side = stream_pair()
    return (
        TunnelConnection(edge_side, protocol.TunnelSession("edge")),
        TunnelConnection(connector_side, protocol.TunnelSession("connector")),
        connector_side,
    )


async def test_a_stream_opened_after_the_connector_drained_is_refused():
    release = trio.Event()
    origin = Origin()

    async def slow(stream) -> None:
        await release.wait()
        await origin(stream)

    edge, connector, _ = memory_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_lost, edge.serve)
        nursery.start_soon(until_lost, connector.serve, slow)
        in_flight = await edge.open_stream(request(b"GET"))
        nursery.start_soon(connector.drain, 30.0)
        with trio.fail_after(5):
            while not (edge.peer_draining and connector._drain_acked.is_set()):
                await trio.sleep(0.01)
        late = await edge.open_stream(request(b"GET"))  # the router would not; a racing edge might
        with pytest.raises(StreamRefused):
            await late.receive_response()
        release.set()
        assert (await in_flight.receive_response()).status == 200  # the drain still serves what it took
        assert origin.received == [b"GET"]
        nursery.cancel_scope.cancel()


async def test_a_stream_never_written_before_the_session_died_is_refused():
    edge, _, connector_side = memory_pair(trio.testing.lockstep_stream_pair)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_lost, edge.serve)
        written = await edge.open_stream(request(b"GET"))
        await trio.testing.wait_all_tasks_blocked()  # the writer is stuck sending it: nobody reads
        unwritten = await edge.open_stream(request(b"GET"))
        await connector_side.aclose()
        with pytest.raises(StreamRefused):
            await unwritten.receive_response()
        with pytest.raises(ProtocolError) as lost:
            await written.receive_response()
        assert not isinstance(lost.value, StreamRefused)  # it may have arrived
        with pytest.raises(StreamRefused):
            await edge.open_stream(request(b"GET"))  # the session has ended


async def test_a_stream_beyond_the_connectors_goaway_is_refused():
    edge, connector, _ = memory_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_lost, edge.serve)
        nursery.start_soon(until_lost, connector.serve, Origin())
        await trio.testing.wait_all_tasks_blocked()
        stream = await edge.open_stream(request(b"GET"))
        connector.session.goaway()  # before it read the stream: GOAWAY names stream 0 as its last
        await connector._flush()
        with pytest.raises(StreamRefused, match="GOAWAY"):
            await stream.receive_response()
        nursery.cancel_scope.cancel()


async def test_a_plain_reset_is_not_a_refusal():
    async def resets(stream) -> None:
        raise ProtocolError("origin broke")

    edge, connector, _ = memory_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_lost, edge.serve)
        nursery.start_soon(until_lost, connector.serve, resets)
        stream = await edge.open_stream(request(b"GET"))
        with pytest.raises(StreamResetError) as reset:
            await stream.receive_response()
        assert not isinstance(reset.value, StreamRefused)
        nursery.cancel_scope.cancel()
