"""PlainSocketStream over real sockets: trio's own conformance checks for half-closeable
streams, and what the origin side relies on beyond them."""

import socket

import pytest
import trio
import trio.testing

from shared.socket_stream import PlainSocketStream


async def stream_pair() -> tuple[PlainSocketStream, PlainSocketStream]:
    first, second = socket.socketpair()
    return PlainSocketStream(first), PlainSocketStream(second)


async def clogged_stream_pair() -> tuple[PlainSocketStream, PlainSocketStream]:
    """A pair with both ways full, as trio's own tests clog its SocketStream."""
    pair = await stream_pair()
    for stream in pair:
        try:
            while True:
                stream.socket.send(b"x" * 10000)
        except BlockingIOError:
            pass
    return pair


async def test_it_behaves_as_trio_expects_of_a_half_closeable_stream():
    await trio.testing.check_half_closeable_stream(stream_pair, clogged_stream_pair)


async def test_taken_from_a_trio_tcp_stream_it_keeps_the_connection_and_its_options():
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        client = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
        server = await listener.accept()
        plain = PlainSocketStream.take(client)
        assert plain.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        await plain.send_all(memoryview(b"through a memoryview"))
        assert await server.receive_some() == b"through a memoryview"
        await server.send_all(b"back")
        assert await plain.receive_some(2) == b"ba"
        assert await plain.receive_some() == b"ck"
        await server.aclose()
        assert await plain.receive_some() == b""
        await plain.aclose()


async def test_sending_to_a_peer_that_closed_is_broken_with_its_cause():
    first, second = await stream_pair()
    await second.aclose()
    with pytest.raises(trio.BrokenResourceError) as caught:
        for _ in range(100):  # the first sends may still be taken before the peer's close is seen
            await first.send_all(b"x" * 65536)
    assert isinstance(caught.value.__cause__, OSError)
    await first.aclose()


async def test_a_reader_on_a_socket_that_never_waits_still_lets_other_tasks_run():
    first, second = await stream_pair()
    await first.send_all(b"x" * 65536)
    ran = []
    async with trio.open_nursery() as nursery:

        async def bystander():
            ran.append(True)

        nursery.start_soon(bystander)
        for _ in range(4):
            assert await second.receive_some(16) == b"x" * 16  # data already there: no wait
        assert ran == [True]
    await first.aclose()
    await second.aclose()


async def test_send_nowait_takes_what_the_socket_takes_and_no_more():
    first, second = await stream_pair()
    assert first.send_nowait(b"now") == 3
    assert await second.receive_some() == b"now"
    (clogged, _) = await clogged_stream_pair()
    assert clogged.send_nowait(b"y" * 10000) == 0  # full: nothing taken, nothing waited for
    await first.send_eof()
    with pytest.raises(trio.ClosedResourceError):
        first.send_nowait(b"after the FIN")
    sender, receiver = await stream_pair()
    await receiver.aclose()
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(100):
            sender.send_nowait(b"x" * 65536)


class CountingSocket(socket.socket):
    """A socket that counts its `recv` calls."""

    calls = 0

    def recv(self, size, *flags):
        self.calls += 1
        return super().recv(size, *flags)


async def test_a_receive_after_an_answer_waits_for_the_reply_instead_of_trying_first():
    first, second = socket.socketpair()
    counted = CountingSocket(fileno=first.detach())
    stream, peer = PlainSocketStream(counted), PlainSocketStream(second)
    await peer.send_all(b"request")
    assert await stream.receive_some(100) == b"request"  # took all there was
    await stream.send_all(b"answer")
    async with trio.open_nursery() as nursery:

        async def reply_later():
            assert await peer.receive_some(100) == b"answer"
            await trio.sleep(0.02)
            await peer.send_all(b"reply")

        nursery.start_soon(reply_later)
        assert await stream.receive_some(100) == b"reply"
    assert counted.calls == 2  # one recv each: none tried before the reply came (that one would block)
    await peer.send_all(b"0123456789")
    assert await stream.receive_some(4) == b"0123"  # a full read: the rest may be there
    await stream.send_all(b"more?")
    assert await stream.receive_some(100) == b"456789"  # read at once, not waited for
    await stream.aclose()
    await peer.aclose()
