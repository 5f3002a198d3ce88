"""A request forwarded over a tunnel session by another worker or edge, served from this
process's own sessions; the stream is presented as the `Exchange` the proxy forwards."""

from __future__ import annotations

import trio

from edge.routing.proxy import forward, forward_upgrade, pick_and_forward, send_page
from edge.routing.router import BUSY_RETRY_AFTER, Router, TunnelBusy
from shared import protocol
from shared.errors import BurrowError, TunnelUnavailable
from shared.events import ResponseHead
from shared.tunnel_stream import TunnelStream


class StreamExchange:
    """A forwarded request (a peer stream) presented as the `Exchange` the proxy forwards."""

    def __init__(self, stream: TunnelStream) -> None:
        self.stream = stream
        self.head = stream.head
        self.client = ("127.0.0.1", 0)  # the visitor's address is in the head already (X-Forwarded-For)
        self.server = ("127.0.0.1", 0)
        self.response_started = False

    @property
    def request_trailers(self):
        return self.stream.trailers

    async def receive_body(self) -> bytes:
        return await self.stream.receive()

    async def send_response(self, head: ResponseHead) -> None:
        self.response_started = True
        await self.stream.send_response(head)

    async def send_body(self, data: bytes) -> None:
        await self.stream.send(data)

    async def end(self) -> None:
        await self.stream.end()

    async def send_trailers(self, headers) -> None:
        await self.stream.send_trailers(headers)

    async def switch_protocols(self, head: ResponseHead) -> tuple[trio.abc.Stream, bytes]:
        await self.send_response(head)
        return StreamPipe(self.stream), b""


class StreamPipe(trio.abc.HalfCloseableStream):
    """An upgraded peer stream as the byte stream `shared.relay.relay` pipes."""

    def __init__(self, stream: TunnelStream) -> None:
        self.stream = stream

    async def send_all(self, data) -> None:
        await self.stream.send(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await self.stream.end()

    async def receive_some(self, max_bytes=None) -> bytes:
        return await self.stream.receive()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def serve_forwarded(stream: TunnelStream, router: Router, tunnel_id: str) -> None:
    """Pass one forwarded request on to a session of `tunnel_id` held here (answers as the proxy
    would); never on to another worker or edge: one extra hop at most."""
    exchange = StreamExchange(stream)
    send = forward_upgrade if stream.kind == protocol.KIND_UPGRADE else forward
    try:
        await pick_and_forward(exchange, router, tunnel_id, stream.head, send)
    except TunnelBusy:
        await send_page(exchange, 503, "edge", "the tunnel is busy; retry", ((b"retry-after", str(BUSY_RETRY_AFTER).encode()),))
    except TunnelUnavailable:
        await send_page(exchange, 502, "edge", "the tunnel has no connector")
    except BurrowError as exc:
        if exchange.response_started:
            raise
        await send_page(exchange, 502, "edge", f"the tunnel failed: {exc}")
