"""The visitor adapters alone: h2load against edge.visitors.https over TLS on loopback, no tunnel.

An in-process handler answers every request with 100 bytes, so the figures are
the ceiling TLS + h2 (or h11) + the Exchange plumbing put on one edge process. The server
runs on core 0 and h2load on core 1 (when there are two), as in bench/run; with
PYTHONPATH set to another checkout it measures that one's adapters.
h2load 1.52 does not reconnect after a GOAWAY, so keep requests / clients at or
under the 1,000-requests-per-connection limit.

    .venv/bin/python bench/h2_bench.py [--requests 10000] [--clients 10] [--streams 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import ssl
import sys

import trio
import trustme

from edge.visitors.https import ALPN, HttpsFrontend
from shared.events import ResponseHead
from shared.tls_socket import TLSSocketListener

HOSTNAME = "bench.test"
CLIENT_CORE = ["taskset", "-c", "1"] if len(os.sched_getaffinity(0)) > 1 else []  # the server keeps core 0 to itself
BODY = b"x" * 100


class FixedAnswer:
    """Stands in for `Proxy`: reads the request body, answers BODY."""

    async def handle(self, exchange) -> None:
        while await exchange.receive_body():
            pass
        await exchange.send_response(ResponseHead(200, ((b"content-length", str(len(BODY)).encode()),)))
        await exchange.send_body(BODY)
        await exchange.end()


async def main(args: argparse.Namespace) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOSTNAME).configure_cert(context)
    context.set_alpn_protocols(ALPN)
    tcp_listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listeners = [TLSSocketListener(listener, context) for listener in tcp_listeners]  # as the edge listens
    port = tcp_listeners[0].socket.getsockname()[1]
    frontend = HttpsFrontend(FixedAnswer())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, frontend.handle, listeners)
        for label, extra in (("h2", ["-m", str(args.streams)]), ("http/1.1", ["--h1"])):
            command = [*CLIENT_CORE, "h2load", "-n", str(args.requests), "-c", str(args.clients), *extra,
                       f"https://127.0.0.1:{port}/"]
            result = await trio.run_process(command, capture_stdout=True, check=False)
            output = result.stdout.decode()
            summary = [line for line in output.splitlines() if re.match(r"(finished in|requests:|status codes:)", line)]
            print(f"{label}: {' '.join(command)}")
            print("\n".join(f"  {line}" for line in summary))
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--streams", type=int, default=10, help="concurrent streams per h2 connection")
    if shutil.which("h2load") is None:
        sys.exit("h2load missing: `make system-deps` installs nghttp2-client")
    if CLIENT_CORE:
        os.sched_setaffinity(0, {0})
    trio.run(main, parser.parse_args())
