"""A hostname's `max_body` in the proxy, over a real tunnel session on loopback: a declared
length over it is answered 413 and never forwarded; a streamed body that outgrows it resets
the origin's stream and gets 413, or ends the visitor's stream once the response started."""

from __future__ import annotations

import pytest
import trio

from edge.routing.proxy import Proxy
from edge.routing.router import Router
from shared.events import RequestHead, ResponseHead
from shared.tunnel_stream import StreamResetError
from tests.edge.routing.test_retry import Exchange, start_session

HOST = b"app.example.test"
LIMIT = 100


class StreamingExchange(Exchange):
    """Hands out `chunks`; with `slow`, each after the first only once the response started."""

    def __init__(self, head: RequestHead, chunks: list[bytes], slow: bool = False) -> None:
        super().__init__(head)
        self.client, self.server = ("127.0.0.2", 5000), ("127.0.0.1", 443)
        self.chunks = list(chunks)
        self.slow = slow
        self.given = 0

    async def receive_body(self) -> bytes:
        with trio.fail_after(5):
            while self.slow and self.given and not self.response_started:
                await trio.sleep(0.01)
        self.given += 1
        return self.chunks.pop(0) if self.chunks else b""


class OneTunnel:
    def tunnel_for(self, host: str) -> str:
        return "t1"


class Gate:
    async def admit(self, exchange, host):
        return lambda head: head

    def max_body(self, host: str) -> int:
        return LIMIT


class Origin:
    """Reads the whole body then answers, or (`answer_first`) answers, then reads."""

    def __init__(self, answer_first: bool = False) -> None:
        self.answer_first = answer_first
        self.outcomes: list[str] = []

    async def __call__(self, stream) -> None:
        try:
            if self.answer_first:
                await stream.send_response(ResponseHead(200, (), has_body=True))
                await stream.send(b"early")
            while await stream.receive():
                pass
            self.outcomes.append("complete")
            if not self.answer_first:
                await stream.send_response(ResponseHead(200, (), has_body=True))
            await stream.end()
        except StreamResetError:
            self.outcomes.append("reset")


async def proxy_with(nursery, origin) -> Proxy:
    router = Router(OneTunnel())
    router.add("t1", await start_session(nursery, origin))
    return Proxy(router, None, frozenset(), gate=Gate())


def post(*headers: tuple[bytes, bytes]) -> RequestHead:
    return RequestHead(b"POST", b"/", HOST, b"https", headers, True)


async def wait_for(outcomes: list[str]) -> None:
    with trio.fail_after(5):
        while not outcomes:
            await trio.sleep(0.01)


async def test_declared_length_over_the_limit_is_never_forwarded():
    origin = Origin()
    async with trio.open_nursery() as nursery:
        proxy = await proxy_with(nursery, origin)
        exchange = StreamingExchange(post((b"content-length", b"101")), [b"x" * 101])
        await proxy.handle(exchange)
        assert exchange.status == 413 and b"larger than" in exchange.body
        fits = StreamingExchange(post((b"content-length", b"100")), [b"x" * 100])
        await proxy.handle(fits)
        assert fits.status == 200
        nursery.cancel_scope.cancel()
    assert origin.outcomes == ["complete"]  # only the request that fits


async def test_streamed_body_over_the_limit_resets_the_origin_stream_and_gets_413():
    origin = Origin()
    async with trio.open_nursery() as nursery:
        proxy = await proxy_with(nursery, origin)
        exchange = StreamingExchange(post(), [b"x" * 40] * 3)
        await proxy.handle(exchange)
        assert exchange.status == 413
        await wait_for(origin.outcomes)
        nursery.cancel_scope.cancel()
    assert origin.outcomes == ["reset"]


async def test_streamed_body_over_the_limit_after_the_response_started_ends_the_visitor_stream():
    origin = Origin(answer_first=True)
    async with trio.open_nursery() as nursery:
        proxy = await proxy_with(nursery, origin)
        exchange = StreamingExchange(post(), [b"x" * 40] * 3, slow=True)
        with pytest.raises(trio.BrokenResourceError, match="over the limit"):
            await proxy.handle(exchange)
        assert exchange.status == 200  # the origin's answer had begun: no 413 can follow
        await wait_for(origin.outcomes)
        nursery.cancel_scope.cancel()
    assert origin.outcomes == ["reset"]
