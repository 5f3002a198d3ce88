"""Attack benchmark: the request rate a normal client gets from a front door while it is
under attack, against the same rate with no attack, measured in one run, for Burrow and
for nginx as the front door.

Starts nginx (bench/peers.py: the origin, and a TLS + HTTP/2 front proxying to it) and
Burrow (edge + connector, default limits: 10 s header timeout, 256 connections per client
IP) in front of the same origin, on loopback, then for each front runs the same bounded
keep-alive GET load (bench/loadgen.py, HTTP/1.1 on its own connections):

* no attack;
* slowloris: --slowloris connections from 127.0.0.2… (--per-ip each) dripping one header
  byte per second over TLS, each reopened as soon as the front closes it;
* each HTTP/2 attack of bench/h2_attacks.py (rapid reset, PRIORITY, empty DATA,
  WINDOW_UPDATE and zero-window, SETTINGS, PING, RST_STREAM floods, CONTINUATION flood
  and drip, HPACK bomb) from its own process, reconnecting --pause seconds after the
  front closes a connection.

    .venv/bin/python bench/attack_bench.py [--requests 2000] [--connections 10] [--slowloris 500]
                                           [--attacks rapid-reset,ping,...] [--pause 0] [--fronts burrow,nginx-tls] [--duration-cap 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio
from h2_attacks import ATTACKS
from loadgen import LoadResult, Target, run_load
from peers import Peers
from tunnel_bench import HOSTNAME, BenchError

WARM_UP = 3.0  # seconds for an attack to reach full strength before the load starts
WARM_UP_REQUESTS = 300  # untimed, before a front's first scenario: connections, caches and sessions warm
H2_ATTACKER = Path(__file__).with_name("h2_attacks.py")
DRIP_CONNECTIONS = 20  # continuation-drip: attacking connections at a time


@dataclass
class AttackStats:
    connected: int = 0  # slowloris connections that completed the TLS handshake
    closed_by_edge: int = 0
    refused: int = 0  # connections the front closed before or during the handshake


async def drip_forever(port: int, context: ssl.SSLContext, source: str, stats: AttackStats) -> None:
    """One slowloris slot: connect, drip a never-ending header one byte per second, reconnect."""
    head = f"GET / HTTP/1.1\r\nHost: {HOSTNAME}\r\nX-Slow: ".encode()
    while True:
        try:
            tcp = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
            stream = trio.SSLStream(tcp, context, server_hostname=HOSTNAME)
            await stream.do_handshake()
        except (OSError, trio.BrokenResourceError, ssl.SSLError):
            stats.refused += 1
            await trio.sleep(1)
            continue
        stats.connected += 1
        try:
            index = 0
            while True:
                await stream.send_all(head[index : index + 1] or b"a")
                index += 1
                with trio.move_on_after(1):
                    if not await stream.receive_some(1024):
                        break
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError):
            pass
        stats.closed_by_edge += 1
        await trio.aclose_forcefully(stream)


async def attacker(port: int, ca_file: str, count: int, per_ip: int) -> None:
    """The slowloris process: `count` dripping slots until SIGTERM; then its stats as JSON."""
    stats = AttackStats()
    context = ssl.create_default_context(cafile=ca_file)
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for slot in range(count):
                nursery.start_soon(drip_forever, port, context, f"127.0.0.{2 + slot // per_ip}", stats)
            async for _ in signals:
                nursery.cancel_scope.cancel()
    print(json.dumps({"summary": True, **vars(stats)}), flush=True)


async def loaded(target: Target, args: argparse.Namespace, command: list[str] | None) -> tuple[LoadResult, dict | None]:
    """The load, while `command` (an attack process printing a JSON summary last) runs."""
    if command is None:
        return await run_load(target, requests=args.requests, connections=args.connections, time_cap=args.duration_cap), None
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as attack:
        try:
            await trio.sleep(WARM_UP)
            result = await run_load(target, requests=args.requests, connections=args.connections, time_cap=args.duration_cap)
        finally:
            attack.send_signal(signal.SIGTERM)
            output, _ = attack.communicate(timeout=60)
    return result, json.loads(output.strip().splitlines()[-1])


def scenarios(args: argparse.Namespace, port: int, ca_file: Path) -> list[tuple[str, list[str] | None]]:
    """(name, attack command or None) for every scenario against the front at `port`."""
    slowloris = [sys.executable, __file__, "--attacker", str(port), str(ca_file), str(args.slowloris), str(args.per_ip)]
    rows = [("no attack", None), ("slowloris", slowloris)]
    for name in args.attacks:
        parallel = DRIP_CONNECTIONS if name == "continuation-drip" else 1
        rows.append((name, [sys.executable, str(H2_ATTACKER), name, str(port), HOSTNAME, str(ca_file),
                            "--parallel", str(parallel), "--pause", str(args.pause), "--seconds", str(WARM_UP + 2 * args.duration_cap),
                            "--slow-path", "/small", "--big-path", "/blob"]))
    return rows


def describe(stats: dict | None) -> str:
    if stats is None:
        return ""
    if "connected" in stats:
        return f"{stats['connected']} connected, {stats['closed_by_edge']} closed by the front, {stats['refused']} refused"
    ended = ", ".join(f"{count} {how}" for how, count in sorted(stats["ended"].items()))
    return f"{stats['connections']} connections: {ended}"


def run_front(name: str, port: int, ca_file: Path, args: argparse.Namespace, report: Callable[[dict], None]) -> None:
    tls = ssl.create_default_context(cafile=str(ca_file))
    tls.set_alpn_protocols(["http/1.1"])
    target = Target("127.0.0.1", port, "/small", HOSTNAME, tls)
    trio.run(lambda: run_load(target, requests=WARM_UP_REQUESTS, connections=args.connections, time_cap=args.duration_cap))
    reference = None
    for scenario, command in scenarios(args, port, ca_file):
        result, stats = trio.run(loaded, target, args, command)
        reference = reference or result.rate
        ratio = result.rate / reference if reference else float("nan")
        print(f"{name:<10} {scenario:<18} {result.rate:>8.0f} {ratio:>8.2f} {result.percentile(0.5) * 1000:>8.1f}"
              f" {result.percentile(0.99) * 1000:>8.1f} {result.errors:>7}  {describe(stats)}", flush=True)
        report({"front": name, "scenario": scenario, "rate": result.rate, "ratio": ratio, "errors": result.errors,
                "p99_ms": result.percentile(0.99) * 1000, "timed_out": result.timed_out, "attack": stats})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Normal-client request rate under attack vs. no attack (loopback only).")
    parser.add_argument("--requests", type=int, default=2000, help="GETs per load run (default 2000)")
    parser.add_argument("--connections", type=int, default=10, help="the normal client's keep-alive connections (default 10)")
    parser.add_argument("--slowloris", type=int, default=500, help="dripping connections (default 500)")
    parser.add_argument("--per-ip", type=int, default=100, help="dripping connections per source address (default 100)")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="HTTP/2 attacks to run, comma-separated (default: all)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds an HTTP/2 attacker waits before reconnecting (default 0)")
    parser.add_argument("--fronts", default="burrow,nginx-tls", help="front doors, comma-separated (default burrow,nginx-tls)")
    parser.add_argument("--duration-cap", type=float, default=30.0, help="seconds per load run at most (default 30)")
    args = parser.parse_args()
    args.attacks = [name for name in args.attacks.split(",") if name]
    args.fronts = [name for name in args.fronts.split(",") if name]
    if min(args.requests, args.connections, args.slowloris, args.per_ip) < 1 or args.duration_cap <= 0:
        parser.error("every count and --duration-cap must be positive")
    if args.slowloris / args.per_ip > 250:
        parser.error("too many source addresses: raise --per-ip")
    if unknown := set(args.attacks) - set(ATTACKS) or set(args.fronts) - {"burrow", "nginx-tls"}:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    return args


def main() -> int:
    args = parse_args()
    rows: list[dict] = []
    print(f"{'front':<10} {'scenario':<18} {'req/s':>8} {'vs none':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  attack")
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="burrow-attack-bench-")))
            peers = Peers(stack, tmp, {**os.environ, "BURROW_HOME": str(tmp / "conn")}, blob_mb=1)
            peers.start_nginx()
            if "burrow" in args.fronts:
                (tmp / "burrow").mkdir()
                peers.start_burrow(stack, tmp / "burrow")
            for name in args.fronts:
                front = peers.fronts[name]
                run_front(name, front.port, front.ca_file, args, rows.append)
    except BenchError as exc:
        print(f"attack_bench: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"benchmark": "attack", "requests": args.requests, "connections": args.connections,
                      "slowloris": args.slowloris, "rows": rows}))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--attacker"]:
        port, ca_file, count, per_ip = sys.argv[2:6]
        trio.run(attacker, int(port), ca_file, int(count), int(per_ip))
    else:
        sys.exit(main())
