"""Memory with many idle WebSocket connections: RSS of the edge and the connector.

Starts, in a temporary directory and on loopback only, proto_bench.py's origin (its
`websockets` echo server), a `burrow-edge` and a `burrow` connector (tunnel_bench.py's
helpers, default settings) routing app.example.test to the echo server, then:

1. reads VmRSS and VmHWM (/proc/PID/status) of the edge and the connector: *baseline*;
2. resets VmHWM, opens --connections wss:// connections through the edge in batches of
   --batch, sends one message on each and checks its echo, leaves them idle --idle
   seconds, reads the memory again: *idle*; then checks one more echo on every
   connection, so none was dropped while idle;
3. closes them all, waits a second, reads the memory: *closed* (VmHWM here is the peak
   of steps 2 and 3).

--cycles N repeats steps 2 and 3 in the same processes, to see whether the memory freed
by closed connections is reused or keeps growing.

The edge allows 256 connections per client IP by default (--max-connections-per-ip);
rather than raising that limit the client spreads its connections over the source
addresses 127.0.0.2-127.0.0.5, so the edge runs with its defaults as a user gets it.
1,000 is also the edge's default --max-streams-per-tunnel, so every connection fits.

The client is asyncio + `websockets` ≥ 15 (for proxy=None: environment proxies are ignored).
Exits 1 if any connection fails or either process reaches the 150 MiB bound of issue 9.
Bounded: each connection must open within 20 s, the whole opening phase within 60 s;
a default run takes about 30 s on a busy 2-core machine, --cycles 3 about 70 s.

    .venv/bin/python bench/ws_idle_bench.py [--connections 1000] [--batch 50] [--idle 5] [--cycles 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import ssl
import sys
import tempfile
import time
from pathlib import Path

from figures import reset_peak_rss
from peers import _pid_of_cmd
from tunnel_bench import (
    HOSTNAME,
    BenchError,
    create_tunnel,
    start,
    start_connector,
    start_edge,
    wait_until,
)
from websockets.asyncio.client import ClientConnection, connect

SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
PER_SOURCE_LIMIT = 256  # the edge's default --max-connections-per-ip
RSS_BOUND_MIB = 150.0  # issue 9's memory acceptance
OPEN_TIMEOUT = 20.0  # one connection: TCP + TLS + upgrade through the tunnel
ECHO_TIMEOUT = 20.0
PHASE_TIMEOUT = 60.0  # opening (or re-checking) every connection
SETTLE_SECONDS = 1.0  # after closing, before the last reading
FD_MARGIN = 256
ORIGIN_SCRIPT = Path(__file__).with_name("proto_bench.py")


def reading(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of `pid` in MiB, and how many files it holds open."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError as exc:
        raise BenchError(f"process {pid} is gone ({exc})") from None
    status = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {**{key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}, "fds": fds}


def raise_fd_limit(needed: int) -> None:
    """Raise this process's (and so its children's) open-file soft limit to `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(f"needs {needed} open files, the hard limit is {hard} (raise it with ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# ---------------------------------------------------------------- the client (asyncio + websockets)


async def open_live(index: int, uri: str, edge_port: int, tls: ssl.SSLContext) -> ClientConnection:
    """One connection from SOURCES[index % 4] through the edge, proven live by one echo."""
    ws = await connect(
        uri, ssl=tls, host="127.0.0.1", port=edge_port, local_addr=(SOURCES[index % len(SOURCES)], 0),
        proxy=None, compression=None, ping_interval=None, open_timeout=OPEN_TIMEOUT,
    )
    try:
        await echo(ws, f"hello {index}")
    except Exception:
        await ws.close()
        raise
    return ws


async def echo(ws: ClientConnection, message: str) -> None:
    await ws.send(message)
    answer = await asyncio.wait_for(ws.recv(), ECHO_TIMEOUT)
    if answer != message:
        raise BenchError(f"echo differs: sent {message!r}, got {answer!r}")


async def in_batches(calls: list, batch: int) -> list:
    """Await the coroutine factories in `calls`, `batch` at a time; results or exceptions, in order."""
    results: list = []
    async with asyncio.timeout(PHASE_TIMEOUT):
        for first in range(0, len(calls), batch):
            results += await asyncio.gather(*(call() for call in calls[first:first + batch]), return_exceptions=True)
    return results


def failures(results: list, what: str) -> list[str]:
    return [f"{what} #{i}: {type(r).__name__}: {r}" for i, r in enumerate(results) if isinstance(r, BaseException)]


def snapshot(label: str, pids: dict[str, int]) -> dict:
    """One row of the report: `label` and a reading of each process."""
    return {"phase": label, **{name: reading(pid) for name, pid in pids.items()}}


async def hold_idle(args: argparse.Namespace, edge_port: int, ca_file: Path, pids: dict[str, int],
                    suffix: str) -> tuple[list[dict], list[str], float]:
    """Open, idle, re-check and close the connections once; the rows read, the failures, the opening time."""
    tls = ssl.create_default_context(cafile=str(ca_file))
    uri = f"wss://{HOSTNAME}:{edge_port}/"
    rows: list[dict] = []
    started = time.monotonic()
    try:
        results = await in_batches([lambda i=i: open_live(i, uri, edge_port, tls) for i in range(args.connections)], args.batch)
    except TimeoutError:
        return rows, [f"opening {args.connections} connections took over {PHASE_TIMEOUT:.0f}s"], time.monotonic() - started
    opened = time.monotonic() - started
    live = [ws for ws in results if not isinstance(ws, BaseException)]
    problems = failures(results, "connection")
    try:
        await asyncio.sleep(args.idle)
        rows.append(snapshot(f"{len(live):,} idle WebSockets{suffix}", pids))
        checks = await in_batches([lambda ws=ws, i=i: echo(ws, f"still here {i}") for i, ws in enumerate(live)], args.batch)
        problems += failures(checks, "echo after idle on live connection")
    except TimeoutError:
        problems.append(f"re-checking the idle connections took over {PHASE_TIMEOUT:.0f}s")
    finally:
        await asyncio.gather(*(ws.close() for ws in live), return_exceptions=True)
    await asyncio.sleep(SETTLE_SECONDS)
    rows.append(snapshot(f"after closing them{suffix}", pids))
    return rows, problems, opened


# ---------------------------------------------------------------- report


def print_table(rows: list[dict]) -> None:
    width = max(len(row["phase"]) for row in rows)
    print(f"{'phase':<{width}} {'edge VmRSS':>11} {'edge VmHWM':>11} {'edge fds':>9} {'conn VmRSS':>11} {'conn VmHWM':>11} {'conn fds':>9}")
    for row in rows:
        edge, conn = row["edge"], row["connector"]
        print(f"{row['phase']:<{width}} {edge['VmRSS']:>7.1f} MiB {edge['VmHWM']:>7.1f} MiB {edge['fds']:>9} "
              f"{conn['VmRSS']:>7.1f} MiB {conn['VmHWM']:>7.1f} MiB {conn['fds']:>9}")


def over_bound(rows: list[dict]) -> list[str]:
    return [f"{name} {key} {value:.1f} MiB ({row['phase']}) is over the {RSS_BOUND_MIB:.0f} MiB bound"
            for row in rows for name in ("edge", "connector")
            for key, value in row[name].items() if key != "fds" and value >= RSS_BOUND_MIB]


def run(args: argparse.Namespace) -> int:
    raise_fd_limit(args.connections + FD_MARGIN)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="burrow-ws-idle-")))
        env = {**os.environ, "BURROW_HOME": str(tmp / "conn")}
        port_file, origin_log = tmp / "origin.json", tmp / "origin.log"
        origin = start(stack, [sys.executable, str(ORIGIN_SCRIPT), "--serve-origin", str(port_file)], origin_log, env)
        wait_until(port_file.exists, "origin", origin, origin_log)
        edge_home = tmp / "E"
        edge_port = start_edge(stack, edge_home, env)
        start_connector(stack, tmp, create_tunnel(tmp, edge_home, edge_port, json.loads(port_file.read_text())["ws"], env), env)
        pids = {"edge": _pid_of_cmd("burrow-edge serve"), "connector": _pid_of_cmd("tunnel run")}
        if not all(pids.values()):
            raise BenchError(f"cannot find the edge or the connector process: {pids}")
        rows = [snapshot("baseline, no connections", pids)]
        reset_peak_rss(list(pids.values()))
        problems: list[str] = []
        open_seconds: list[float] = []
        for cycle in range(1, args.cycles + 1):
            suffix = f" (cycle {cycle})" if args.cycles > 1 else ""
            measured, problems, opened = asyncio.run(hold_idle(args, edge_port, edge_home / "ca.pem", pids, suffix))
            rows += measured
            open_seconds.append(round(opened, 2))
            if problems:
                break
    print(f"{args.connections:,} wss:// connections through the edge from {', '.join(SOURCES)}, "
          f"{args.batch} at a time, opened in {', '.join(f'{s:.1f}' for s in open_seconds)} s, idle {args.idle:g} s; "
          "VmHWM after the baseline is the peak since the baseline")
    print_table(rows)
    print(json.dumps({"connections": args.connections, "open_seconds": open_seconds, "failures": len(problems),
                      "rows": [{key: value if key == "phase" else {k: round(v, 1) for k, v in value.items()}
                                for key, value in row.items()} for row in rows]}))
    problems += over_bound(rows)
    for problem in problems[:5]:
        print(f"FAIL: {problem}", file=sys.stderr)
    if problems:
        print(f"FAIL: {len(problems)} problem(s) in all (the first 5 above)", file=sys.stderr)
        return 1
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000, help="concurrent WebSocket connections (default 1000)")
    parser.add_argument("--batch", type=int, default=50, help="connections opened at once (default 50)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds to hold them idle (default 5)")
    parser.add_argument("--cycles", type=int, default=1, help="open/idle/close cycles in the same processes (default 1, at most 3)")
    args = parser.parse_args()
    if not 1 <= args.connections <= PER_SOURCE_LIMIT * len(SOURCES):
        parser.error(f"--connections must be 1 to {PER_SOURCE_LIMIT * len(SOURCES)} "
                     f"({len(SOURCES)} source addresses × the edge's {PER_SOURCE_LIMIT} per IP)")
    if args.batch < 1 or not 0 <= args.idle <= 60 or not 1 <= args.cycles <= 3:
        parser.error("--batch must be positive, --idle 0 to 60 seconds, --cycles 1 to 3")
    return args


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # tear down on SIGTERM as on Ctrl-C
    try:
        return run(args)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
