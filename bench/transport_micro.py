"""Tunnel transport cost without sockets: small exchanges/s over an in-memory stream pair.

    .venv/bin/python bench/transport_micro.py [--exchanges 5000] [--concurrency 50]

Measures the shared protocol + transport alone (both ends in one process), the
part of each request's cost that the tunnel framing adds.
"""

from __future__ import annotations

import argparse
import time

import trio
import trio.testing

from shared import protocol
from shared.events import RequestHead, ResponseHead
from shared.transport import TunnelConnection

HEAD = RequestHead(
    b"GET", b"/small", b"app.example.test", b"https",
    ((b"host", b"app.example.test"), (b"user-agent", b"bench"), (b"accept", b"*/*"),
     (b"x-forwarded-for", b"127.0.0.1"), (b"burrow-request-id", b"0123456789abcdef0123456789abcdef")),
)
RESPONSE = ResponseHead(200, ((b"content-type", b"text/plain"), (b"content-length", b"13")))
BODY = b"hello, world\n"


async def answer(stream):
    await stream.send_response(RESPONSE)
    await stream.send(BODY)
    await stream.end()


async def run(exchanges: int, concurrency: int) -> float:
    edge_side, connector_side = trio.testing.memory_stream_pair()
    edge = TunnelConnection(edge_side, protocol.TunnelSession("edge"))
    connector = TunnelConnection(connector_side, protocol.TunnelSession("connector"))
    remaining = exchanges

    async def client():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with await edge.open_stream(HEAD) as stream:
                await stream.receive_response()
                while await stream.receive():
                    pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(edge.serve)
        nursery.start_soon(connector.serve, answer)
        started = time.perf_counter()
        async with trio.open_nursery() as clients:
            for _ in range(concurrency):
                clients.start_soon(client)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    return exchanges / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    rate = trio.run(run, args.exchanges, args.concurrency)
    print(f"{rate:,.0f} exchanges/s ({1e6 / rate:.0f} µs of one core per exchange, both ends)")


if __name__ == "__main__":
    main()
