"""The cost of observability: requests/s through a tunnel with metrics + access log on vs. both off.

Starts, in a temporary directory and on loopback only, one origin (bench/origin.py) and two
edge + connector pairs in front of it:

* **off**: `--access-log off` and no `--metrics`, on both sides;
* **on**: `--metrics 127.0.0.1:0 --access-log FILE` on both sides (`burrow-edge serve`, `burrow tunnel run`).

Then it runs the same bounded small-GET load (bench/loadgen.py, TLS + SNI) against each,
alternating off/on for --rounds rounds so drift hits both alike, and reports the median
requests/s of each, the CPU time the edge and connector spent per request (from /proc; it
holds steady when other jobs compete for the CPUs, unlike requests/s) and the on/off ratios. Afterwards it checks the "on" side really did the work:
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
from dataclasses import dataclass, field
from pathlib import Path

import trio
from loadgen import Target, run_load
from tunnel_bench import (
    BIN,
    HA_CONNECTIONS,
    HOSTNAME,
    TUNNEL_NAME,
    ZONE,
    BenchError,
    cli,
    create_tunnel,
    start,
    start_origin,
    wait_until,
)

METRICS_LINE = re.compile(r"metrics\.listening address=127\.0\.0\.1:(\d+)")
MAX_CAP = 10.0
SETTLE = 1.0


@dataclass
class Side:
    """One edge + connector pair, and what the "on" side writes."""

    name: str
    target: Target
    pids: tuple[int, ...]  # the edge and the connector, whose CPU time is counted
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
    run += ["--metrics", "127.0.0.1:0", "--access-log", str(tmp / "connector-access.log")] if observed else ["--access-log", "off"]
    connector_log = tmp / "connector.log"
    connector = start(stack, [*run, TUNNEL_NAME], connector_log, env)
    wait_until(lambda: connector_log.read_text().count("tunnel.registered") >= HA_CONNECTIONS,
               f"{name} connector", connector, connector_log)
    tls = ssl.create_default_context(cafile=str(home / "ca.pem"))
    tls.set_alpn_protocols(["http/1.1"])
    side = Side(name, Target("127.0.0.1", edge_port, "/small", HOSTNAME, tls), (edge.pid, connector.pid))
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


def cpu_seconds(pids: tuple[int, ...]) -> float:
    """User + system CPU time the processes have used so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@dataclass
class Tally:
    """What the loads against one side measured."""

    rates: list[float] = field(default_factory=list)
    completed: int = 0
    sent: int = 0
    cpu: float = 0.0

    @property
    def cpu_per_request_ms(self) -> float:
        return self.cpu / self.completed * 1e3 if self.completed else float("nan")


def measure(sides: list[Side], args: argparse.Namespace) -> tuple[dict[str, Tally], list[str]]:
    """Alternate the sides for `rounds` rounds; return what each measured, and notes."""
    tallies = {side.name: Tally() for side in sides}
    notes = []
    for _ in range(args.rounds):
        for side in sides:
            before = cpu_seconds(side.pids)
            result = trio.run(lambda: run_load(
                side.target, requests=args.requests, connections=args.connections, time_cap=args.duration_cap
            ))
            tally = tallies[side.name]
            tally.cpu += cpu_seconds(side.pids) - before
            tally.rates.append(result.rate)
            tally.completed += result.completed
            tally.sent += result.completed + result.errors
            if result.errors:
                notes.append(f"{side.name}: {result.errors} failed requests")
            if result.timed_out:
                notes.append(f"{side.name}: hit the {args.duration_cap:g}s cap after {result.completed} requests")
    return tallies, notes


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
            tallies, notes = measure(sides, args)
            notes += check_work(sides[1], tallies["on"].sent)
    except BenchError as exc:
        print(f"bench setup failed: {exc}", file=sys.stderr)
        return 1
    off, on = tallies["off"], tallies["on"]
    rate = {name: statistics.median(t.rates) for name, t in tallies.items()}
    notes.append(f"client, origin, 2 edges and 2 connectors share this machine's {os.cpu_count()} CPUs; "
                 "CPU per request is the steadier figure when other jobs compete")
    print(f"{'configuration':<28} {'req/s (median)':>15} {'CPU ms/request':>15}  req/s per round")
    for name, label in (("off", "metrics + access log off"), ("on", "metrics + access log on")):
        t = tallies[name]
        print(f"{label:<28} {rate[name]:>15,.0f} {t.cpu_per_request_ms:>15.3f}  {', '.join(f'{r:,.0f}' for r in t.rates)}")
    rate_ratio = rate["on"] / rate["off"] if rate["off"] else float("nan")
    cpu_ratio = on.cpu_per_request_ms / off.cpu_per_request_ms
    print(f"{'on/off':<28} {rate_ratio:>15.3f} {cpu_ratio:>15.3f}")
    for note in notes:
        print(f"note: {note}")
    line = json.dumps({
        "params": vars(args) | {"json": None},
        "cpus": os.cpu_count(),
        "req_per_s": {name: round(value, 1) for name, value in rate.items()},
        "rounds": {name: [round(r, 1) for r in t.rates] for name, t in tallies.items()},
        "cpu_ms_per_request": {name: round(t.cpu_per_request_ms, 4) for name, t in tallies.items()},
        "ratio_on_off": {"req_per_s": round(rate_ratio, 4), "cpu_per_request": round(cpu_ratio, 4)},
        "notes": notes,
    })
    if args.json:
        args.json.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
