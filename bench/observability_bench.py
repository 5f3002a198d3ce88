"""The cost of observability: requests/s through a tunnel with metrics + access log on vs. both off.

Starts, in a temporary directory and on loopback only, one origin (bench/origin.py) and two
edge + connector pairs in front of it:

* **off**: `burrow-edge serve --access-log off`, no `--metrics` on either side;
* **on**: `burrow-edge serve --metrics 127.0.0.1:0 --access-log FILE`, `burrow tunnel run --metrics 127.0.0.1:0`.

Then it runs the same bounded small-GET load (bench/loadgen.py, TLS + SNI) against each,
alternating off/on for --rounds rounds so drift hits both alike, and reports the median
requests/s of each and their ratio. Afterwards it checks the "on" side really did the work:
one access log line and one metrics count per request sent.
Each load stops after --requests requests or --duration-cap seconds (≤ 10 by default).

    .venv/bin/python bench/observability_bench.py [--requests N] [--connections 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import ssl
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import trio

from loadgen import Target, run_load
from tunnel_bench import (
    BIN, HA_CONNECTIONS, HOSTNAME, TUNNEL_NAME, ZONE, BenchError, cli, create_tunnel, start, start_origin, wait_until,
)

METRICS_LINE = re.compile(r"metrics\.listening address=127\.0\.0\.1:(\d+)")
MAX_CAP = 10.0
SETTLE = 1.0


@dataclass
class Side:
    """One edge + connector pair, and what the "on" side writes."""

    name: str
    target: Target
    access_log: Path | None = None
    edge_metrics: int | None = None


def start_side(stack: contextlib.ExitStack, root: Path, origin_port: int, observed: bool) -> Side:
    """Init and serve an edge, create and run a tunnel to the origin, with or without observability."""
    name = "on" if observed else "off"
    tmp = root / name
    tmp.mkdir()
    env = {**os.environ, "BURROW_HOME": str(tmp / "conn")}
    home = tmp / "edge"
    listen = ["--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0"]
    cli([str(BIN / "burrow-edge"), "init", "--home", str(home), "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca", *listen], env)
    access = tmp / "access.log"
    serve = ["--metrics", "127.0.0.1:0", "--access-log", str(access)] if observed else ["--access-log", "off"]
    edge_log = tmp / "edge.log"
    edge = start(stack, [str(BIN / "burrow-edge"), "serve", "--home", str(home), *serve], edge_log, env)
    wait_until((home / "listen.json").exists, f"{name} edge", edge, edge_log)
    edge_port = int(json.loads((home / "listen.json").read_text())["https"].rsplit(":", 1)[1])
    config = create_tunnel(tmp, home, edge_port, origin_port, env)
    run = [str(BIN / "burrow"), "tunnel", "run", "--config", str(config), "--grace-period", "1"]
    run += ["--metrics", "127.0.0.1:0"] if observed else []
    connector_log = tmp / "connector.log"
    connector = start(stack, [*run, TUNNEL_NAME], connector_log, env)
    wait_until(lambda: connector_log.read_text().count("tunnel.registered") >= HA_CONNECTIONS,
               f"{name} connector", connector, connector_log)
    tls = ssl.create_default_context(cafile=str(home / "ca.pem"))
    tls.set_alpn_protocols(["http/1.1"])
    side = Side(name, Target("127.0.0.1", edge_port, "/small", HOSTNAME, tls))
    if observed:
        wait_until(lambda: METRICS_LINE.search(edge_log.read_text()), "edge metrics", edge, edge_log)
        side.access_log = access
        side.edge_metrics = int(METRICS_LINE.search(edge_log.read_text()).group(1))
    return side


def edge_requests(port: int) -> float:
    """burrow_edge_requests_total summed over every label, from the edge's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("burrow_edge_requests_total{"))


def measure(sides: list[Side], args: argparse.Namespace) -> tuple[dict[str, list[float]], list[str], int]:
    """Alternate the sides for `rounds` rounds; return req/s per side, notes, requests sent to "on"."""
    rates: dict[str, list[float]] = {side.name: [] for side in sides}
    notes, sent_on = [], 0
    for _ in range(args.rounds):
        for side in sides:
            result = trio.run(lambda: run_load(
                side.target, requests=args.requests, connections=args.connections, time_cap=args.duration_cap
            ))
            rates[side.name].append(result.rate)
            if side.name == "on":
                sent_on += result.completed + result.errors
            if result.errors:
                notes.append(f"{side.name}: {result.errors} failed requests")
            if result.timed_out:
                notes.append(f"{side.name}: hit the {args.duration_cap:g}s cap after {result.completed} requests")
    return rates, notes, sent_on


def check_work(on: Side, sent: int) -> list[str]:
    """The "on" side logged and counted what it served: the requests sent plus the setup's API calls."""
    time.sleep(SETTLE)  # the last responses' lines are written just after the client got them
    lines = on.access_log.read_text().count("\n")
    counted = edge_requests(on.edge_metrics)
    notes = [f"on: access log has {lines} lines, edge metrics count {counted:.0f} requests, for {sent} sent"]
    if lines == 0 or counted == 0:
        raise BenchError("the 'on' edge logged or counted nothing: observability was not on")
    return notes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Requests/s with metrics + access log on vs. off (loopback only).")
    parser.add_argument("--requests", type=int, default=3000, help="small GETs per load run (default 3000)")
    parser.add_argument("--connections", type=int, default=20, help="keep-alive connections (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="off/on rounds; medians are reported (default 3)")
    parser.add_argument("--duration-cap", type=float, default=MAX_CAP, help=f"seconds per load at most (≤ {MAX_CAP:g})")
    parser.add_argument("--json", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args()
    if min(args.requests, args.connections, args.rounds) < 1 or not 0 < args.duration_cap <= MAX_CAP:
        parser.error(f"--requests, --connections and --rounds must be positive, --duration-cap in (0, {MAX_CAP:g}]")
    return args


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # tear down on SIGTERM as on Ctrl-C
    try:
        with contextlib.ExitStack() as stack:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="burrow-obs-bench-")))
            origin_port = start_origin(stack, root, {**os.environ})
            sides = [start_side(stack, root, origin_port, observed) for observed in (False, True)]
            rates, notes, sent = measure(sides, args)
            notes += check_work(sides[1], sent)
    except BenchError as exc:
        print(f"bench setup failed: {exc}", file=sys.stderr)
        return 1
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    notes.append(f"client, origin, 2 edges and 2 connectors share this machine's {os.cpu_count()} CPUs; the ratio is the figure")
    print(f"{'configuration':<34} {'req/s (median)':>15}  rounds")
    print(f"{'metrics + access log off':<34} {off:>15,.0f}  {', '.join(f'{r:,.0f}' for r in rates['off'])}")
    print(f"{'metrics + access log on':<34} {on:>15,.0f}  {', '.join(f'{r:,.0f}' for r in rates['on'])}")
    print(f"{'on/off':<34} {on / off if off else float('nan'):>15.3f}")
    for note in notes:
        print(f"note: {note}")
    line = json.dumps({
        "params": vars(args) | {"json": None},
        "cpus": os.cpu_count(),
        "req_per_s": {"off": round(off, 1), "on": round(on, 1)},
        "rounds": {name: [round(r, 1) for r in values] for name, values in rates.items()},
        "ratio_on_off": round(on / off, 4) if off else None,
        "notes": notes,
    })
    if args.json:
        args.json.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
