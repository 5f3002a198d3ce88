"""Compiled sans-IO cores against their pure-Python sources (BURROW_PURE_PYTHON=1), in one run.

Alternates the two, round after round, on the same machine:

* micro: the tunnel session core alone (shared/protocol.py, shared/framing.py), in a
  fresh interpreter per measurement: the edge opens a stream with a 10-header request,
  the connector reads it and answers with a 5-header response and a 64-byte body, the
  edge reads that and acknowledges it; µs per exchange, best of 5 batches;
* micro, HTTP/1.1: the heads around llhttp alone: the edge parses and checks a 10-header
  request, the connector writes it and reads a 6-header response with a 64-byte body,
  the edge writes that response;
* profile (unless --micro-only): bench/profile_burrow.py --gil on the small-GET load,
  HTTP/1.1 × 50 connections (and --h2): CPU ms per request of the edge and the connector
  and the requests/s while profiled;
* proto (with --proto): bench/proto_bench.py, h2 requests/s and WebSocket round trips/s
  through the tunnel, each as a ratio to the same origin reached directly.

Prints each round's figures, then medians and compiled/pure ratios (for times, pure/compiled:
above 1 means the compiled cores pay), then the medians as JSON on the last line.

    .venv/bin/python bench/native_bench.py [--rounds 3] [--seconds 6] [--micro-only] [--h2] [--proto]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
MODES = {"compiled": {}, "pure": {"BURROW_PURE_PYTHON": "1"}}
RUN_TIMEOUT = 300

MICRO = r"""
import sys
import time
from shared import native
from shared.events import RequestHead, ResponseHead
from shared.protocol import TunnelSession

headers = tuple((b"x-header-%d" % i, b"value number %d" % i) for i in range(10))
head = RequestHead(b"GET", b"/small?q=1", b"app.example.test", b"https", headers, False)
answer = ResponseHead(200, tuple((b"x-answer-%d" % i, b"value %d" % i) for i in range(5)), True)
body = b"x" * 64

def batch(n):
    edge, connector = TunnelSession("edge"), TunnelSession("connector")
    start = time.perf_counter()
    for _ in range(n):
        stream_id = edge.open_stream(head)
        for event in connector.receive_data(edge.data_to_send()):
            pass
        connector.send_response(stream_id, answer)
        connector.send_data(stream_id, body, end_stream=True)
        for event in edge.receive_data(connector.data_to_send()):
            if type(event).__name__ == "DataReceived":
                edge.acknowledge(stream_id, event.flow_length)
        connector.data_to_send()
    return (time.perf_counter() - start) / n * 1e6

batch(2000)
print(native.status())
print(min(batch(int(sys.argv[1])) for _ in range(5)))
"""


HTTP1_MICRO = r"""
import sys
import time
from connector.origins.http1_codec import Request, ResponseReader, write_request
from edge.visitors.http1_guard import HeadLimits
from edge.visitors.http1_parser import RequestParser
from edge.visitors.http1_response import Response

fields = [(b"x-header-%d" % i, b"value number %d" % i) for i in range(8)]
request = b"GET /small?q=1 HTTP/1.1\r\nHost: app.example.test\r\nUser-Agent: bench\r\n" + \
    b"".join(b"%b: %b\r\n" % field for field in fields) + b"\r\n"
answer = tuple((b"x-answer-%d" % i, b"value %d" % i) for i in range(5)) + ((b"content-length", b"64"),)
response = b"HTTP/1.1 200 OK\r\n" + b"".join(b"%b: %b\r\n" % field for field in answer) + b"\r\n" + b"x" * 64

def batch(n):
    limits = HeadLimits()
    parser, reader = RequestParser(limits, limits.max_header_bytes), ResponseReader()
    start = time.perf_counter()
    for _ in range(n):
        parser.feed(request)  # the edge reads the visitor's request
        head = parser.head
        parser.next_request()
        write_request(Request(head.method, head.target, head.headers))  # the connector writes it to the origin
        reader.start(head.method)
        reader.feed(response)  # and reads the origin's answer
        reader.take_body()
        out = Response(head.method, head.http10, True)  # the edge writes it to the visitor
        out.head(reader.status, reader.headers, False)
        out.body(b"x" * 64)
        out.end()
    return (time.perf_counter() - start) / n * 1e6

batch(2000)
print(min(batch(int(sys.argv[1])) for _ in range(5)))
"""


def http1_micro(env: dict[str, str], exchanges: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", HTTP1_MICRO, str(exchanges)], env=env, cwd="/", capture_output=True,
                         text=True, check=True, timeout=RUN_TIMEOUT).stdout.splitlines()
    return {"HTTP/1.1 heads alone, µs per exchange": float(out[-1])}


def micro(env: dict[str, str], exchanges: int) -> tuple[dict[str, float], str]:
    """The figure, and which cores ran (shared/native.py's status)."""
    out = subprocess.run([sys.executable, "-c", MICRO, str(exchanges)], env=env, cwd="/", capture_output=True, text=True,
                         check=True, timeout=RUN_TIMEOUT).stdout.splitlines()
    return {"session core, µs per exchange": float(out[-1])}, out[0]


def profile(env: dict[str, str], seconds: int, h2: bool) -> dict[str, float]:
    command = [sys.executable, str(BENCH / "profile_burrow.py"), "--seconds", str(seconds), "--gil", "--top", "1",
               "--out", str(BENCH / "results" / "native-profile")] + (["--h2"] if h2 else [])
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT).stdout
    label = "h2" if h2 else "h1"
    figures = {}
    if rate := re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out):
        figures[f"{label} req/s while profiled"] = float(rate.group(1))
    for side in ("edge", "connector"):
        if cpu := re.search(rf"^{side}:\n.*: ([\d.]+) ms CPU per request", out, re.M):
            figures[f"{label} {side} CPU ms per request"] = float(cpu.group(1))
    if len(figures) != 3:
        raise SystemExit(f"profile_burrow.py gave no figures:\n{out}")
    return figures


def proto(env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, str(BENCH / "proto_bench.py")], env=env, capture_output=True, text=True,
                         check=True, timeout=RUN_TIMEOUT).stdout
    rows = json.loads(out.splitlines()[-1])
    return {f"{metric.split(',')[0]} tunnel/direct": row["ratio"] for metric, row in rows.items()} | \
        {f"{metric.split(',')[0]} tunnel {row['unit']}": row["tunnel"] for metric, row in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6, help="length of each profiled load (≤ 10)")
    parser.add_argument("--exchanges", type=int, default=20_000, help="exchanges per micro batch")
    parser.add_argument("--micro-only", action="store_true")
    parser.add_argument("--h2", action="store_true", help="also profile the HTTP/2 load")
    parser.add_argument("--proto", action="store_true", help="also run proto_bench.py")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k != "BURROW_PURE_PYTHON"}
    results: dict[str, dict[str, list[float]]] = {mode: {} for mode in MODES}
    for round_ in range(1, args.rounds + 1):
        for mode, extra in MODES.items():
            env = base | extra
            figures, status = micro(env, args.exchanges)
            figures |= http1_micro(env, args.exchanges)
            if round_ == 1:
                print(f"{mode}: {status}")
            if not args.micro_only:
                figures |= profile(env, args.seconds, h2=False)
                if args.h2:
                    figures |= profile(env, args.seconds, h2=True)
            if args.proto:
                figures |= proto(env)
            print(f"round {round_} {mode}: " + ", ".join(f"{k} {v:g}" for k, v in figures.items()), flush=True)
            for name, value in figures.items():
                results[mode].setdefault(name, []).append(value)
    medians = {mode: {name: statistics.median(values) for name, values in figures.items()} for mode, figures in results.items()}
    width = max(len(name) for name in medians["compiled"])
    print(f"\nmedians of {args.rounds} rounds\n{'figure':<{width}}  {'compiled':>10}  {'pure':>10}  {'gain':>6}")
    for name, compiled in medians["compiled"].items():
        pure = medians["pure"][name]
        lower_is_better = "µs" in name or "ms" in name
        gain = pure / compiled if lower_is_better else compiled / pure
        print(f"{name:<{width}}  {compiled:>10.4g}  {pure:>10.4g}  {gain:>5.2f}×")
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
