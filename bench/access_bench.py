"""A normal client's request rate through the edge's HTTPS layer and Access gate, alone and
during a flood from another address that the hostname's rate limit answers with 429.

Everything runs in this one process on loopback (the flood and the normal client share the
CPU with the edge, so the ratio is what counts): the edge's HttpsFrontend with the real `Gate`
over a real registry, in front of a fixed 100-byte answer instead of a tunnel. The normal client
(127.0.0.1) stays under the limit; the flood (127.0.0.2) is refused after its first N requests.

    .venv/bin/python bench/access_bench.py [--requests 3000] [--flood-connections 50]
"""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
from functools import partial
from pathlib import Path

import trio
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import LoadResult, Target, run_load  # noqa: E402
from edge.access.gate import open_gate  # noqa: E402
from edge.registry.policy import Policy  # noqa: E402
from edge.registry.store import Registry  # noqa: E402
from edge.visitors.https import ALPN, HttpsFrontend  # noqa: E402
from shared.crypto import mint_secret  # noqa: E402
from shared.events import ResponseHead  # noqa: E402

HOSTNAME = "app.bench.test"
BODY = b"x" * 100
TIME_CAP = 120.0


class GatedAnswer:
    """The proxy's gate, then BODY where the tunnel would be."""

    def __init__(self, gate) -> None:
        self.gate = gate

    async def handle(self, exchange) -> None:
        if await self.gate.admit(exchange, HOSTNAME) is None:
            return
        while await exchange.receive_body():
            pass
        await exchange.send_response(ResponseHead(200, ((b"content-length", str(len(BODY)).encode()),)))
        await exchange.send_body(BODY)
        await exchange.end()


def report(label: str, result: LoadResult) -> float:
    print(f"{label}: {result.completed} ok, {result.errors} refused/failed in {result.elapsed:.2f}s = {result.rate:.0f} req/s")
    return result.rate


async def main(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="burrow-access-bench-"))
    registry = Registry.open(home / "registry.db")
    account, _ = registry.create_account("bench")
    tunnel = registry.create_tunnel(account.id, "bench", mint_secret())
    registry.route_dns(account.id, tunnel.id, HOSTNAME, "bench.test")
    limit = args.requests + 100  # per client IP per minute: each normal run stays under it
    registry.set_policy(account.id, HOSTNAME, Policy.parse({"rate_limit": f"{limit}/60s"}))
    gate = await open_gate(registry, home, "https://bench.test")

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOSTNAME).configure_cert(server_context)
    server_context.set_alpn_protocols(ALPN)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client_context.set_alpn_protocols(["http/1.1"])
    listeners = await trio.open_ssl_over_tcp_listeners(0, server_context, host="127.0.0.1")
    port = listeners[0].transport_listener.socket.getsockname()[1]
    normal = Target("127.0.0.1", port, "/", HOSTNAME, client_context)
    during_flood = Target("127.0.0.1", port, "/", HOSTNAME, client_context, local_address="127.0.0.3")  # a fresh window
    flood = Target("127.0.0.1", port, "/", HOSTNAME, client_context, local_address="127.0.0.2")
    print(f"policy: rate limit {limit}/60s per client IP; normal client: {args.requests} requests on 10 connections")

    def flood_count() -> int:
        return gate.limiter._windows.get((HOSTNAME, "127.0.0.2"), (0.0, 0))[1]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, HttpsFrontend(GatedAnswer(gate)).handle, listeners)
        alone = report("no attack", await run_load(normal, requests=args.requests, connections=10, time_cap=TIME_CAP))
        async with trio.open_nursery() as attack:
            attack.start_soon(partial(run_load, flood, requests=10**9, connections=args.flood_connections, time_cap=TIME_CAP))
            with trio.move_on_after(TIME_CAP):
                while flood_count() < limit:  # measure once the flood is being refused
                    await trio.sleep(0.1)
            refused_before = gate.limiter.refused
            during = report("during flood", await run_load(during_flood, requests=args.requests, connections=10, time_cap=TIME_CAP))
            refused = gate.limiter.refused - refused_before
            attack.cancel_scope.cancel()
        print(f"flood: {args.flood_connections} connections from 127.0.0.2, {refused} requests answered 429 while measuring")
        print(f"ratio during flood / no attack: {during / alone:.2f}")
        nursery.cancel_scope.cancel()
    registry.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--flood-connections", type=int, default=50)
    trio.run(main, parser.parse_args())
