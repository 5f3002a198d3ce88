"""DNS benchmark: UDP queries/s from the edge's authoritative DNS for a zone of many routed
hostnames, and from knotd and nsd serving the same zone, in one run.

In a temporary directory, on loopback only: `burrow-edge init`, then --names CNAME routes
written straight into the fresh registry (edge.registry.store.Registry, no API; this
set-up connection skips fsync so 100,000 routes take seconds), then `burrow-edge serve`.
The same zone goes into a zone file for knotd and nsd (bench/dns_peers.py, one worker
each). Servers run pinned to core 0 and the clients to core 1 (with 2 cores and taskset).

For each server: one dnsperf pass over every name (the *first pass*: for Burrow the
answers not yet cached), then --rounds timed dnsperf runs of --seconds each (--types
queries, A by default, for the routed names in order, 64 outstanding, with EDNS0 if
--edns), median reported, and the server's CPU time per answered query. Burrow also gets
a count-bounded UDP load from this process afterwards that checks every answer (NOERROR,
CNAME + A), and its RSS is read after start-up and after the dnsperf runs. --compare REV
also runs the edge of git revision REV (its edge/ and shared/ exported to the temp dir)
on the same zone, for before/after figures from one run.

    .venv/bin/python bench/dns_bench.py [--names 100000] [--seconds 10] [--rounds 1] [--types A,AAAA,HTTPS] [--edns]
                                        [--compare 212d0c9] [--check-queries 20000]

Prints a table, then the same figures as JSON on the last line of stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import secrets
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns_peers
from dnslib import DNSRecord

from edge.registry.store import Registry
from shared.crypto import SECRET_BYTES
from shared.edge_config import load_edge_config

ROOT = Path(__file__).resolve().parent.parent
ZONE = "example.test"
ADDRESS = "127.0.0.1"
BIN = Path(sys.executable).parent
SETUP_TIMEOUT = 120.0
LOSS_TIMEOUT = 1.0
DNSPERF_OUTSTANDING = 64
DNSPERF_MAX_RUNS = 1000  # passes over the names file per timed run, besides its time limit
REFERENCES = ("knotd", "nsd")


def setup_home(home: Path, names: int) -> str:
    """`burrow-edge init` a fresh home, route `names` hostnames through the registry; the tunnel id."""
    subprocess.run(
        [
            BIN / "burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", ADDRESS, "--dev-ca",
            "--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0",
        ],
        check=True, capture_output=True,
    )
    registry = Registry.open(load_edge_config(home).registry)
    try:
        registry._conn.execute("PRAGMA synchronous=OFF")  # this set-up connection only; the edge opens its own
        account, _token = registry.create_account("bench")
        tunnel = registry.create_tunnel(account.id, "bench", secrets.token_bytes(SECRET_BYTES))
        for i in range(names):
            registry.route_dns(account.id, tunnel.id, hostname(i), ZONE)
    finally:
        registry.close()
    return tunnel.id


def hostname(i: int) -> str:
    return f"host-{i}.{ZONE}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its descendants (nsd forks its server)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return total


def rss_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of `pid` in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: round(int(re.search(rf"{key}:\s+(\d+) kB", status).group(1)) / 1024, 1) for key in ("VmRSS", "VmHWM")}


def export(revision: str, tmp: Path) -> Path:
    """edge/ and shared/ of git `revision`, in a directory of `tmp` to put first on PYTHONPATH."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision, "edge", "shared"],
                             capture_output=True, check=True).stdout
    target = tmp / f"source-{revision}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


@contextlib.contextmanager
def running_edge(home: Path, prefix: list[str], source: Path | None = None) -> Iterator[tuple[int, int]]:
    """`burrow-edge serve` (with its code from `source` if given); yields its DNS port and pid; stopped on exit."""
    listen = home / "listen.json"
    listen.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(source)} if source else None
    with dns_peers.running([*prefix, str(BIN / "burrow-edge"), "serve", "--home", str(home)], home.parent / "edge.log",
                           listen.exists, env) as pid:
        yield int(json.loads(listen.read_text())["dns"].rsplit(":", 1)[1]), pid


def python_load(port: int, names: int, queries: int, sockets: int, window: int, cap: float) -> dict:
    """UDP load from this process; every answer is checked for NOERROR and CNAME + A."""
    packets = [DNSRecord.question(hostname(i)).pack() for i in range(names)]
    selector = selectors.DefaultSelector()
    in_flight = {}
    for _ in range(sockets):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((ADDRESS, port))
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


def dnsperf(port: int, data: Path, runs: int, seconds: float, prefix: list[str], edns: bool) -> dict:
    """One dnsperf run: at most `runs` passes over `data`, at most `seconds`."""
    result = subprocess.run(
        [*prefix, "dnsperf", "-s", ADDRESS, "-p", str(port), "-d", str(data), "-n", str(runs),
         "-l", str(int(seconds)), "-q", str(DNSPERF_OUTSTANDING), "-t", "2", *(["-e"] if edns else [])],
        capture_output=True, text=True, timeout=seconds + 30,
    )
    figures = {key: re.search(rf"{pattern}\s+([\d.]+)", result.stdout) for key, pattern in
               {"queries": "Queries sent:", "answered": "Queries completed:", "lost": "Queries lost:",
                "qps": "Queries per second:"}.items()}
    if result.returncode != 0 or not figures["qps"]:
        raise RuntimeError(f"dnsperf failed:\n{result.stdout}\n{result.stderr}")
    return {key: round(float(match.group(1))) for key, match in figures.items()}


@dataclass(frozen=True)
class Load:
    data: Path  # dnsperf's queries file
    seconds: float
    rounds: int
    cap: float
    client: list[str]  # command prefix (pinning)
    edns: bool


def measure(port: int, pid: int, load: Load) -> dict:
    """A first pass over every name, then `load.rounds` timed runs: their median queries/s, and
    the server's CPU time per answered query over all of them."""
    first = dnsperf(port, load.data, 1, load.cap, load.client, load.edns)
    cpu = cpu_seconds(pid)
    runs = [dnsperf(port, load.data, DNSPERF_MAX_RUNS, load.seconds, load.client, load.edns) for _ in range(load.rounds)]
    cpu_us = (cpu_seconds(pid) - cpu) / max(1, sum(run["answered"] for run in runs)) * 1e6
    return {"qps": statistics.median(run["qps"] for run in runs), "first_pass_qps": first["qps"],
            "cpu_us": round(cpu_us, 1), "lost": sum(run["lost"] for run in runs), "runs": runs}


def pinning() -> tuple[list[str], list[str], Callable[[], contextlib.AbstractContextManager]]:
    """Command prefixes for servers (core 0) and clients (core 1), and a context pinning this process to core 1."""
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        return [], [], contextlib.nullcontext

    @contextlib.contextmanager
    def on_client_core() -> Iterator[None]:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {1})
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)

    return ["taskset", "-c", "0"], ["taskset", "-c", "1"], on_client_core


def run(names: int, seconds: float, rounds: int, check_queries: int, cap: float = 120.0,
        types: tuple[str, ...] = ("A",), edns: bool = False, compare: str | None = None) -> dict:
    """Every figure of one benchmark run (see the module docstring)."""
    if not shutil.which("dnsperf"):
        raise RuntimeError("dnsperf not installed (apt-get install -y dnsperf)")
    server, client, on_client_core = pinning()
    result: dict = {"names": names, "types": types, "edns": edns, "seconds": seconds, "rounds": rounds,
                    "pinned": bool(server), "compare": compare}
    with tempfile.TemporaryDirectory(prefix="burrow-dns-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        start = time.perf_counter()
        tunnel_id = setup_home(tmp / "edge", names)
        result["setup_s"] = round(time.perf_counter() - start, 1)
        load = Load(tmp / "queries.txt", seconds, rounds, cap, client, edns)
        load.data.write_text("".join(f"{hostname(i)} {qtype}\n" for i in range(names) for qtype in types))
        zone_file = tmp / f"{ZONE}.zone"
        dns_peers.write_zone(zone_file, ZONE, tunnel_id, ADDRESS, (hostname(i) for i in range(names)))
        edges = [("burrow", None)] + ([(f"burrow@{compare}", export(compare, tmp))] if compare else [])
        for label, source in edges:
            with running_edge(tmp / "edge", server, source) as (port, pid):
                rss_start = rss_mib(pid)
                result[label] = measure(port, pid, load)
                result[label]["rss_start_mib"], result[label]["rss_mib"] = rss_start, rss_mib(pid)
                if source is None:
                    with on_client_core():
                        result["check"] = python_load(port, names, check_queries, 8, 16, cap)
        for name in REFERENCES:
            try:
                with dns_peers.reference(name, tmp, ZONE, zone_file, hostname(0), server) as (ref_port, ref_pid):
                    result[name] = measure(ref_port, ref_pid, load)
            except RuntimeError as exc:
                result[name] = {"skipped": str(exc).splitlines()[0]}
    return result


def ratio(result: dict, reference: str, name: str = "burrow") -> float | None:
    qps = result.get(reference, {}).get("qps")
    return round(result[name]["qps"] / qps, 3) if qps else None


def report(result: dict) -> str:
    edns = " with EDNS0" if result["edns"] else ""
    lines = [f"DNS: {result['names']:,} routed names, UDP {'/'.join(result['types'])} queries{edns} "
             f"(dnsperf, {DNSPERF_OUTSTANDING} outstanding), "
             + ("servers on core 0, clients on core 1" if result["pinned"] else "unpinned")
             + f"; median of {result['rounds']} run(s) of {result['seconds']:g} s",
             f"{'server':<16} {'queries/s':>10} {'first pass':>11} {'CPU µs/query':>13} {'lost':>6}  notes"]
    edges = ["burrow"] + ([f"burrow@{result['compare']}"] if result["compare"] else [])
    for name in (*edges, *REFERENCES):
        figures = result[name]
        if "skipped" in figures:
            lines.append(f"{name:<16} skipped: {figures['skipped']}")
            continue
        notes = ""
        if name in edges:
            notes = " ".join(f"{ratio(result, ref, name)}× {ref}" for ref in REFERENCES if ratio(result, ref, name)) + \
                f"; RSS {figures['rss_start_mib']['VmRSS']} MiB after start, {figures['rss_mib']['VmRSS']} after the load"
        lines.append(f"{name:<16} {figures['qps']:>10,.0f} {figures['first_pass_qps']:>11,.0f} {figures['cpu_us']:>13} "
                     f"{figures['lost']:>6}  {notes}")
    check = result["check"]
    lines.append(f"check: {check['answered']}/{check['queries']} answered from Python, {check['wrong']} wrong, "
                 f"{check['lost']} lost; set-up {result['setup_s']} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="each timed dnsperf run (default 10)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--check-queries", type=int, default=20_000, help="checked queries from Python (default 20,000)")
    parser.add_argument("--duration-cap", type=float, default=120.0, help="bound on the first pass and the check")
    parser.add_argument("--types", default="A", help="query types, comma-separated, each asked for every name (default A)")
    parser.add_argument("--edns", action="store_true", help="queries with an EDNS0 OPT record (dnsperf -e)")
    parser.add_argument("--compare", metavar="REV", help="also run the edge of this git revision, e.g. main")
    args = parser.parse_args()
    result = run(args.names, args.seconds, args.rounds, args.check_queries, args.duration_cap,
                 tuple(args.types.split(",")), args.edns, args.compare)
    for name in REFERENCES:
        result[f"ratio_{name}"] = ratio(result, name)
    print(report(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
