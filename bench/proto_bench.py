"""Protocol benchmark: HTTP/2 requests/s and WebSocket round trips/s, through the tunnel
and directly to the same origin, in one run.

Starts, in a temporary directory and on loopback only, an origin process (this file with
--serve-origin) holding two listeners:

* HTTP: one port that speaks HTTP/1.1 (bench/origin.py's trio+h11 handler, which is what
  the connector talks to) and HTTP/2 with prior knowledge (h2c, a minimal trio+h2 handler,
  picked when a connection starts with the h2 preface): GET /small answers 13 bytes both ways;
* WebSocket: a `websockets` echo server;

then a `burrow-edge` and a `burrow` connector routing app.example.test to the HTTP port and
ws.example.test to the WebSocket port, and measures:

* h2 requests/s with `h2load -n N -c C -m M`: https://app.example.test through the edge
  (TLS, ALPN h2) vs. h2c straight to the origin port;
* WebSocket round trips/s with the `websockets` sync client, K small messages, one in
  flight: wss:// through the edge vs. ws:// straight to the echo server.

The edge answers at most 10,000 requests per h2 connection and h2load 1.52 does not
reconnect after GOAWAY, so N must stay at or under 10,000 × C.

    .venv/bin/python bench/proto_bench.py [--requests 2000] [--clients 10] [--streams 10] [--messages 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HTTP_HOST = "app.example.test"
WS_HOST = "ws.example.test"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
COMMAND_TIMEOUT = 300


# ---------------------------------------------------------------- origin (--serve-origin)


def serve_origin(port_file: Path) -> None:
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions
    import origin as h11_origin  # bench/origin.py
    import trio
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import serve

    def echo(ws) -> None:
        try:
            for message in ws:
                ws.send(message)
        except ConnectionClosed:
            pass

    ws_server = serve(echo, "127.0.0.1", 0, max_size=None, compression=None)
    threading.Thread(target=ws_server.serve_forever, daemon=True).start()

    class Prefixed:
        """A stream whose first receive_some returns bytes already read from it."""

        def __init__(self, stream, first: bytes) -> None:
            self.stream, self.first = stream, first

        async def receive_some(self, max_bytes=None) -> bytes:
            if self.first:
                data, self.first = self.first, b""
                return data
            return await self.stream.receive_some(max_bytes)

        async def send_all(self, data) -> None:
            await self.stream.send_all(data)

        async def aclose(self) -> None:
            await self.stream.aclose()

    async def serve_h2(stream, data: bytes) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        body = h11_origin.SMALL_BODY
        while True:
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    headers = [(b":status", b"200"), (b"content-type", b"text/plain"),
                               (b"content-length", str(len(body)).encode())]
                    conn.send_headers(event.stream_id, headers)
                    conn.send_data(event.stream_id, body, end_stream=True)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    await stream.send_all(conn.data_to_send())
                    return
            if out := conn.data_to_send():
                await stream.send_all(out)
            if not (data := await stream.receive_some(65536)):
                return

    async def serve_http(stream) -> None:
        first = b""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, h2.exceptions.ProtocolError):
            while len(first) < len(H2_PREFACE) and H2_PREFACE.startswith(first):
                if not (chunk := await stream.receive_some(65536)):
                    await stream.aclose()
                    return
                first += chunk
            if first.startswith(H2_PREFACE):
                try:
                    await serve_h2(stream, first)
                finally:
                    await trio.aclose_forcefully(stream)
                return
        await h11_origin.serve_connection(Prefixed(stream, first))

    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        ports = {"http": listeners[0].socket.getsockname()[1], "ws": ws_server.socket.getsockname()[1]}
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(ports))
        os.replace(tmp, port_file)
        await trio.serve_listeners(serve_http, listeners)

    trio.run(main)


# ---------------------------------------------------------------- measurements


def h2load(url: str, args: argparse.Namespace, *extra: str) -> tuple[list[str], float, str]:
    """Run h2load; return the command, requests/s, and its summary lines. Every request must succeed."""
    command = ["h2load", "-n", str(args.requests), "-c", str(args.clients), "-m", str(args.streams), *extra, url]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    output = result.stdout
    summary = "\n".join(f"    {line}" for line in output.splitlines()
                        if re.match(r"\s*(finished in|requests:|status codes:|Application protocol:)", line))
    match = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", output)
    if result.returncode != 0 or not match or not done or int(done.group(2)) != args.requests:
        raise SystemExit(f"{' '.join(command)} did not complete every request:\n{output}\n{result.stderr}")
    return command, float(match.group(1)), summary


def ws_round_trips(uri: str, messages: int, **kwargs) -> float:
    """Round trips/s for `messages` small text messages, one in flight; checks every echo."""
    from websockets.sync.client import connect

    with connect(uri, max_size=None, compression=None, open_timeout=20, **kwargs) as ws:
        for i in range(20):  # warm up
            ws.send(f"warm-up {i}")
            ws.recv(timeout=10)
        start = time.perf_counter()
        for i in range(messages):
            message = f"message {i:08d}"
            ws.send(message)
            if ws.recv(timeout=10) != message:
                raise SystemExit(f"{uri}: echo {i} differs")
        return messages / (time.perf_counter() - start)


def main(args: argparse.Namespace) -> None:
    if shutil.which("h2load") is None:
        sys.exit("h2load missing: `make system-deps` installs nghttp2-client")
    if args.requests > 10_000 * args.clients:
        sys.exit("--requests must be at most 10,000 × --clients (the edge's per-connection limit; h2load does not reconnect)")
    from tunnel_bench import (
        BIN,
        cli,
        create_tunnel,
        start,
        start_connector,
        start_edge,
        wait_until,
    )

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="burrow-proto-bench-")))
        env = {**os.environ, "BURROW_HOME": str(tmp / "conn")}
        port_file, origin_log = tmp / "origin.json", tmp / "origin.log"
        origin = start(stack, [sys.executable, __file__, "--serve-origin", str(port_file)], origin_log, env)
        wait_until(port_file.exists, "origin", origin, origin_log)
        ports = json.loads(port_file.read_text())
        edge_home = tmp / "E"
        edge_port = start_edge(stack, edge_home, env)
        config = create_tunnel(tmp, edge_home, edge_port, ports["http"], env)
        cli([str(BIN / "burrow"), "tunnel", "route", "dns", "bench", WS_HOST], env)
        text = config.read_text().replace(
            "  - service: http_status:404",
            f"  - hostname: {WS_HOST}\n    service: ws://127.0.0.1:{ports['ws']}\n  - service: http_status:404",
        )
        config.write_text(text)
        start_connector(stack, tmp, config, env)
        ca = edge_home / "ca.pem"

        rows = []
        tunnel_cmd, tunnel_h2, tunnel_summary = h2load(
            f"https://{HTTP_HOST}:{edge_port}/small", args, f"--connect-to=127.0.0.1:{edge_port}")
        direct_cmd, direct_h2, direct_summary = h2load(f"http://127.0.0.1:{ports['http']}/small", args)
        rows.append(("HTTP/2 GET /small", "req/s", direct_h2, tunnel_h2))

        context = ssl.create_default_context(cafile=str(ca))
        sock = socket.create_connection(("127.0.0.1", edge_port), timeout=30)
        tunnel_ws = ws_round_trips(f"wss://{WS_HOST}:{edge_port}/", args.messages, sock=sock, ssl=context)
        direct_ws = ws_round_trips(f"ws://127.0.0.1:{ports['ws']}/", args.messages)
        rows.append((f"WebSocket echo, {args.messages} msgs, 1 in flight", "round trips/s", direct_ws, tunnel_ws))

    print(f"h2 through the tunnel: {' '.join(tunnel_cmd)}\n{tunnel_summary}")
    print(f"h2c direct to the origin: {' '.join(direct_cmd)}\n{direct_summary}")
    print(f"websocket: websockets {__import__('websockets').__version__} sync client, {args.messages} "
          f"~16-byte text messages, one in flight (wss:// via the edge vs ws:// direct)\n")
    width = max(len(row[0]) for row in rows)
    print(f"{'metric':<{width}}  {'unit':<14}{'direct':>10}{'tunnel':>10}{'tunnel/direct':>15}")
    for metric, unit, direct, tunnel in rows:
        print(f"{metric:<{width}}  {unit:<14}{direct:>10.0f}{tunnel:>10.0f}{tunnel / direct:>15.2f}")
    print(json.dumps({metric: {"unit": unit, "direct": round(direct, 1), "tunnel": round(tunnel, 1),
                               "ratio": round(tunnel / direct, 3)} for metric, unit, direct, tunnel in rows}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--streams", type=int, default=10, help="concurrent streams per h2 connection")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--serve-origin", type=Path, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.serve_origin:
        serve_origin(parsed.serve_origin)
    else:
        main(parsed)
