"""Attack benchmark: the request rate a normal client gets from the edge while it is under
attack, against the same rate with no attack, measured in one run.

Starts origin + edge (default limits: 10 s header timeout, 256 connections per client IP)
+ connector on loopback (the setup of bench/tunnel_bench.py), then runs the same bounded
keep-alive GET load (bench/loadgen.py) through the tunnel:

* baseline: no attack;
* slowloris: --slowloris connections from 127.0.0.2… (--per-ip each) dripping one header
  byte per second over TLS, each reopened as soon as the edge closes it.

A rate-limited flood scenario belongs next to `slowloris` in SCENARIOS once per-hostname
rate limits exist (issue 7, Access and policies).

    .venv/bin/python bench/attack_bench.py [--requests 3000] [--connections 10] [--slowloris 500] [--duration-cap 30]
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import subprocess
import sys
from dataclasses import dataclass

import trio
from loadgen import LoadResult, Target, run_load
from tunnel_bench import HOSTNAME, BenchError, running_stack

WARM_UP = 3.0  # seconds for the attack to reach full strength before the load starts
WARM_UP_REQUESTS = 300  # untimed, before the first scenario: connections, caches and sessions warm


@dataclass
class AttackStats:
    connected: int = 0  # slowloris connections that completed the TLS handshake
    closed_by_edge: int = 0
    refused: int = 0  # connections the edge closed before or during the handshake


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
    """The attack process: `count` dripping slots until SIGTERM; then its stats as JSON."""
    stats = AttackStats()
    context = ssl.create_default_context(cafile=ca_file)
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for slot in range(count):
                nursery.start_soon(drip_forever, port, context, f"127.0.0.{2 + slot // per_ip}", stats)
            async for _ in signals:
                nursery.cancel_scope.cancel()
    print(json.dumps(vars(stats)), flush=True)


async def slowloris(target: Target, args: argparse.Namespace) -> tuple[LoadResult, AttackStats]:
    """The load while a separate process (its own event loop) runs the attack."""
    command = [sys.executable, __file__, "--attacker", str(target.port), args.ca_file, str(args.slowloris), str(args.per_ip)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as attack:
        try:
            await trio.sleep(WARM_UP)
            result = await run_load(target, requests=args.requests, connections=args.connections, time_cap=args.duration_cap)
        finally:
            attack.send_signal(signal.SIGTERM)
            output, _ = attack.communicate(timeout=30)
    return result, AttackStats(**json.loads(output.strip().splitlines()[-1]))


async def baseline(target: Target, args: argparse.Namespace) -> tuple[LoadResult, None]:
    return await run_load(target, requests=args.requests, connections=args.connections, time_cap=args.duration_cap), None


SCENARIOS = [("no attack", baseline), ("slowloris", slowloris)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Normal-client request rate under attack vs. no attack (loopback only).")
    parser.add_argument("--requests", type=int, default=3000, help="GETs per load run (default 3000)")
    parser.add_argument("--connections", type=int, default=10, help="the normal client's keep-alive connections (default 10)")
    parser.add_argument("--slowloris", type=int, default=500, help="dripping connections (default 500)")
    parser.add_argument("--per-ip", type=int, default=100, help="dripping connections per source address (default 100)")
    parser.add_argument("--duration-cap", type=float, default=30.0, help="seconds per load run at most (default 30)")
    args = parser.parse_args()
    if min(args.requests, args.connections, args.slowloris, args.per_ip) < 1 or args.duration_cap <= 0:
        parser.error("every count and --duration-cap must be positive")
    if args.slowloris / args.per_ip > 250:
        parser.error("too many source addresses: raise --per-ip")
    return args


def main() -> int:
    args = parse_args()
    try:
        with running_stack(mb=1) as ends:
            args.ca_file = str(ends.ca_file)
            tls = ssl.create_default_context(cafile=args.ca_file)
            tls.set_alpn_protocols(["http/1.1"])
            target = Target("127.0.0.1", ends.edge_port, "/small", HOSTNAME, tls)
            trio.run(lambda: run_load(target, requests=WARM_UP_REQUESTS, connections=args.connections, time_cap=args.duration_cap))
            rows = [(name, *trio.run(run, target, args)) for name, run in SCENARIOS]
    except BenchError as exc:
        print(f"attack_bench: {exc}", file=sys.stderr)
        return 1
    reference = rows[0][1].rate
    print(f"{'scenario':<12} {'req/s':>8} {'vs none':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  attack")
    report = []
    for name, result, stats in rows:
        ratio = result.rate / reference if reference else float("nan")
        attack = "" if stats is None else f"{stats.connected} connected, {stats.closed_by_edge} closed by the edge, {stats.refused} refused"
        print(f"{name:<12} {result.rate:>8.0f} {ratio:>8.2f} {result.percentile(0.5) * 1000:>8.1f} {result.percentile(0.99) * 1000:>8.1f} {result.errors:>7}  {attack}")
        report.append({"scenario": name, "rate": result.rate, "ratio": ratio, "errors": result.errors, "timed_out": result.timed_out, "attack": None if stats is None else vars(stats)})
    print(json.dumps({"benchmark": "attack", "requests": args.requests, "connections": args.connections, "slowloris": args.slowloris, "rows": report}))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--attacker"]:
        port, ca_file, count, per_ip = sys.argv[2:6]
        trio.run(attacker, int(port), ca_file, int(count), int(per_ip))
    else:
        sys.exit(main())
