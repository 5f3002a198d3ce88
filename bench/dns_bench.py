"""DNS benchmark: queries/s from the edge's authoritative DNS with many routed hostnames.

In a temporary directory, on loopback only: `burrow-edge init`, then --names CNAME
routes written straight into the fresh registry (edge.registry.store.Registry, no API),
then `burrow-edge serve`. The load is UDP from this process: --sockets sockets,
--window queries in flight on each, --queries in all (A queries for the routed
names, round robin), stopped by --duration-cap. A query with no answer within
LOSS_TIMEOUT counts as lost. If `dnsperf` is on PATH (apt: dnsperf) it runs on
the same names too; otherwise that line says it was skipped.

    .venv/bin/python bench/dns_bench.py [--names 10000] [--queries 50000] [--sockets 8] [--window 16] [--duration-cap 60]

Prints a table, then the same figures as JSON on the last line of stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from dnslib import DNSRecord

from edge.registry.store import Registry
from shared.crypto import SECRET_BYTES
from shared.edge_config import load_edge_config

ZONE = "example.test"
BIN = Path(sys.executable).parent
SETUP_TIMEOUT = 30.0
LOSS_TIMEOUT = 1.0
DNSPERF_OUTSTANDING = 64


def setup_home(home: Path, names: int) -> None:
    """`burrow-edge init` a fresh home and route `names` hostnames through the registry directly."""
    subprocess.run(
        [
            BIN / "burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca",
            "--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0",
        ],
        check=True, capture_output=True,
    )
    registry = Registry.open(load_edge_config(home).registry_path)
    try:
        account, _token = registry.create_account("bench")
        tunnel = registry.create_tunnel(account.id, "bench", secrets.token_bytes(SECRET_BYTES))
        for i in range(names):
            registry.route_dns(account.id, tunnel.id, hostname(i), ZONE)
    finally:
        registry.close()


def hostname(i: int) -> str:
    return f"host-{i}.{ZONE}"


@contextlib.contextmanager
def running_edge(home: Path) -> Iterator[int]:
    """`burrow-edge serve`; yields its DNS port; stopped on exit."""
    log = open(home.parent / "edge.log", "wb")
    proc = subprocess.Popen([BIN / "burrow-edge", "serve", "--home", home], stdout=log, stderr=subprocess.STDOUT)
    try:
        listen = home / "listen.json"
        deadline = time.monotonic() + SETUP_TIMEOUT
        while not listen.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"edge did not start:\n{(home.parent / 'edge.log').read_text()}")
            time.sleep(0.05)
        yield int(json.loads(listen.read_text())["dns"].rsplit(":", 1)[1])
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def python_load(port: int, names: int, queries: int, sockets: int, window: int, cap: float) -> dict:
    """UDP load from this process; every answer is checked for NOERROR and CNAME + A."""
    packets = [DNSRecord.question(hostname(i)).pack() for i in range(names)]
    selector = selectors.DefaultSelector()
    in_flight = {}
    for _ in range(sockets):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        in_flight[sock] = 0
    sent = answered = lost = wrong = 0

    def send(sock: socket.socket) -> None:
        nonlocal sent
        packet = packets[sent % names]
        sock.send(struct.pack("!H", sent & 0xFFFF) + packet[2:])
        sent += 1
        in_flight[sock] += 1

    start = time.perf_counter()
    deadline = start + cap
    for sock in in_flight:
        for _ in range(window):
            if sent < queries:
                send(sock)
    while answered + lost < sent and time.perf_counter() < deadline:
        events = selector.select(LOSS_TIMEOUT)
        if not events:  # nothing came back for a while: what is in flight is lost
            for sock in in_flight:
                lost += in_flight[sock]
                in_flight[sock] = 0
                for _ in range(window):
                    if sent < queries:
                        send(sock)
            continue
        for key, _ in events:
            sock = key.fileobj
            while True:
                try:
                    reply = sock.recv(4096)
                except BlockingIOError:
                    break
                answered += 1
                in_flight[sock] -= 1
                rcode, ancount = reply[3] & 0xF, struct.unpack_from("!H", reply, 6)[0]
                wrong += rcode != 0 or ancount != 2
                if sent < queries:
                    send(sock)
    elapsed = time.perf_counter() - start
    for sock in in_flight:
        sock.close()
    return {"queries": sent, "answered": answered, "lost": lost, "wrong": wrong,
            "seconds": round(elapsed, 2), "qps": round(answered / elapsed)}


def dnsperf_load(port: int, names: int, queries: int, cap: float, tmp: Path) -> dict | None:
    """dnsperf over the same names, --queries in all, if it is installed."""
    path = shutil.which("dnsperf")
    if path is None:
        return None
    data = tmp / "queries.txt"
    data.write_text("".join(f"{hostname(i)} A\n" for i in range(names)))
    runs = max(1, queries // names)
    result = subprocess.run(
        [path, "-s", "127.0.0.1", "-p", str(port), "-d", str(data), "-n", str(runs),
         "-l", str(int(cap)), "-q", str(DNSPERF_OUTSTANDING)],
        capture_output=True, text=True, timeout=cap + 30,
    )
    figures = {key: re.search(rf"{pattern}\s+([\d.]+)", result.stdout) for key, pattern in
               {"queries": "Queries sent:", "answered": "Queries completed:", "lost": "Queries lost:",
                "qps": "Queries per second:"}.items()}
    if result.returncode != 0 or not figures["qps"]:
        raise SystemExit(f"dnsperf failed:\n{result.stdout}\n{result.stderr}")
    return {key: float(match.group(1)) for key, match in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=50_000)
    parser.add_argument("--sockets", type=int, default=8)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--duration-cap", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="burrow-dns-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        setup_start = time.perf_counter()
        setup_home(tmp / "edge", args.names)
        setup = time.perf_counter() - setup_start
        with running_edge(tmp / "edge") as port:
            python = python_load(port, args.names, args.queries, args.sockets, args.window, args.duration_cap)
            dnsperf = dnsperf_load(port, args.names, args.queries, args.duration_cap, tmp)
    print(f"setup: {args.names} routes in {setup:.1f}s (cpus: {os.cpu_count()})")
    print(f"{'client':<8} {'queries':>8} {'answered':>9} {'lost':>6} {'queries/s':>10}")
    print(f"{'python':<8} {python['queries']:>8} {python['answered']:>9} {python['lost']:>6} {python['qps']:>10}"
          + (f"  ({python['wrong']} wrong answers)" if python["wrong"] else ""))
    if dnsperf is None:
        print("dnsperf  skipped: not installed (apt install dnsperf)")
    else:
        print(f"{'dnsperf':<8} {dnsperf['queries']:>8.0f} {dnsperf['answered']:>9.0f} {dnsperf['lost']:>6.0f} {dnsperf['qps']:>10.0f}")
    print(json.dumps({"names": args.names, "python": python, "dnsperf": dnsperf}))


if __name__ == "__main__":
    main()
