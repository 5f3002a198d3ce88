"""TLS stream cost: CPU µs per small exchange and MB/s of bulk, `trio.SSLStream` against
`shared.tls_socket.TLSSocketStream`, over real loopback sockets, both ends in one process,
the two kinds alternated in rounds of the same run (ratios, not absolute figures):

    .venv/bin/python bench/tls_stream_micro.py [--rounds 3] [--connections 50] [--exchanges 200] [--mib 64]
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import sys
import time
from pathlib import Path

import trio
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from shared.tls_socket import TLSSocketStream  # noqa: E402

REQUEST = b"G" * 120
RESPONSE = b"R" * 240
CHUNK = 256 * 1024


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("bench.test").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def tls_pair(kind: str, server_ctx, client_ctx, listener: trio.SocketListener):
    """A connected (client, server) pair of `kind` streams, handshakes done."""
    client_tcp = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
    server_tcp = await listener.accept()
    if kind == "trio":
        client = trio.SSLStream(client_tcp, client_ctx, server_hostname="bench.test")
        server = trio.SSLStream(server_tcp, server_ctx, server_side=True, https_compatible=True)
    else:
        client = TLSSocketStream.wrap(client_tcp.socket, client_ctx, server_hostname="bench.test")
        server = TLSSocketStream.wrap(server_tcp.socket, server_ctx, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    return client, server


async def exchanges(kind: str, connections: int, count: int) -> float:
    """CPU µs per request/response exchange over `connections` connections."""
    server_ctx, client_ctx = contexts()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    pairs = [await tls_pair(kind, server_ctx, client_ctx, listeners[0]) for _ in range(connections)]

    async def echo(stream):
        for _ in range(count):
            await stream.receive_some(65536)
            await stream.send_all(RESPONSE)

    async def ask(stream):
        for _ in range(count):
            await stream.send_all(REQUEST)
            await stream.receive_some(65536)

    started = time.process_time()
    async with trio.open_nursery() as nursery:
        for client, server in pairs:
            nursery.start_soon(echo, server)
            nursery.start_soon(ask, client)
    cpu = time.process_time() - started
    for client, server in pairs:
        await client.aclose()
        await server.aclose()
    await listeners[0].aclose()
    return cpu * 1e6 / (connections * count)


async def bulk(kind: str, mib: int) -> float:
    """MB/s of one `mib` MiB one-way transfer."""
    server_ctx, client_ctx = contexts()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    client, server = await tls_pair(kind, server_ctx, client_ctx, listeners[0])
    total = mib * 1024 * 1024
    payload = b"x" * CHUNK

    async def send():
        for _ in range(total // CHUNK):
            await client.send_all(payload)

    async def receive():
        got = 0
        while got < total:
            got += len(await server.receive_some(CHUNK))

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(receive)
    elapsed = time.perf_counter() - started
    await client.aclose()
    await server.aclose()
    await listeners[0].aclose()
    return total / elapsed / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--exchanges", type=int, default=200)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for kind in ("trio", "socket"):
            results.setdefault((kind, "exchange"), []).append(
                trio.run(exchanges, kind, args.connections, args.exchanges))
            results.setdefault((kind, "bulk"), []).append(trio.run(bulk, kind, args.mib))
    trio_x, sock_x = (statistics.median(results[k, "exchange"]) for k in ("trio", "socket"))
    trio_b, sock_b = (statistics.median(results[k, "bulk"]) for k in ("trio", "socket"))
    print(f"small exchange, CPU µs (both ends): trio.SSLStream {trio_x:.1f}, TLSSocketStream {sock_x:.1f}"
          f" ({trio_x / sock_x:.2f}x less)")
    print(f"bulk {args.mib} MiB: trio.SSLStream {trio_b:.0f} MB/s, TLSSocketStream {sock_b:.0f} MB/s"
          f" ({sock_b / trio_b:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
