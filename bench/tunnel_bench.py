"""End-to-end benchmark: origin direct vs. the same origin through a Burrow tunnel.

Starts, in a temporary directory and on loopback only, a trio+h11 origin
(bench/origin.py), a `burrow-edge` and a `burrow` connector, then measures:

* requests/s (and latency) for small keep-alive GETs over many connections,
  with the Python load client in bench/loadgen.py (TLS + SNI for the tunnel);
* single-stream MiB/s for a download and an upload of --mb MiB, with curl.

Every measurement is bounded by a request/byte count and by --duration-cap.
Prints a table, then the same figures as JSON on the last line of stdout.

    .venv/bin/python bench/tunnel_bench.py [--requests N] [--connections 50] [--mb 200] [--duration-cap S]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trio
from loadgen import LoadResult, Target, run_load

HOSTNAME = "app.example.test"
ZONE = "example.test"
TUNNEL_NAME = "bench"
HA_CONNECTIONS = 4
SETUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
MIB = 1024 * 1024
BIN = Path(sys.executable).parent
ORIGIN_SCRIPT = Path(__file__).with_name("origin.py")


class BenchError(Exception):
    """Setup failed; the message says which step and why."""


@dataclass
class Row:
    """One line of the report."""

    metric: str
    unit: str
    direct: float | None
    tunnel: float | None

    @property
    def ratio(self) -> float | None:
        if self.direct is None or self.tunnel is None or not self.direct:
            return None
        return self.tunnel / self.direct


@dataclass(frozen=True)
class Endpoints:
    """How to reach the origin directly and through the tunnel."""

    origin_port: int
    edge_port: int
    ca_file: Path
    upload_file: Path

    @property
    def direct_base(self) -> str:
        return f"http://127.0.0.1:{self.origin_port}"

    @property
    def tunnel_base(self) -> str:
        return f"https://{HOSTNAME}:{self.edge_port}"

    def curl_tunnel_args(self) -> list[str]:
        return ["--cacert", str(self.ca_file), "--resolve", f"{HOSTNAME}:{self.edge_port}:127.0.0.1"]


# ---------------------------------------------------------------- processes


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start(stack: contextlib.ExitStack, cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    """Start a background process logging to `log`; the stack stops it on exit."""
    out = stack.enter_context(log.open("wb"))
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    stack.callback(_stop, proc)
    return proc


def wait_until(check: Callable[[], bool], what: str, proc: subprocess.Popen, log: Path) -> None:
    """Poll `check` until true; fail if `proc` exits or SETUP_TIMEOUT passes."""
    deadline = time.monotonic() + SETUP_TIMEOUT
    while not check():
        if proc.poll() is not None:
            raise BenchError(f"{what}: process exited with {proc.returncode}; log:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not ready after {SETUP_TIMEOUT:.0f}s; log:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)


def cli(cmd: list[str], env: dict) -> str:
    """Run a short CLI command; return its stdout, or raise with its stderr."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=SETUP_TIMEOUT)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr.strip()}")
    return done.stdout


# ---------------------------------------------------------------- setup


def start_origin(stack: contextlib.ExitStack, tmp: Path, env: dict) -> int:
    """Start bench/origin.py; return its port."""
    port_file = tmp / "origin.port"
    log = tmp / "origin.log"
    proc = start(stack, [sys.executable, str(ORIGIN_SCRIPT), "--port-file", str(port_file)], log, env)
    wait_until(port_file.exists, "origin", proc, log)
    return int(port_file.read_text())


def start_edge(stack: contextlib.ExitStack, home: Path, env: dict, serve_args: tuple[str, ...] = ()) -> int:
    """Initialize and start an edge with a dev CA (`burrow-edge serve` gets `serve_args` too); return its HTTPS port."""
    listen = ["--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0"]
    cli([str(BIN / "burrow-edge"), "init", "--home", str(home), "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca", *listen], env)
    log = home.parent / "edge.log"
    proc = start(stack, [str(BIN / "burrow-edge"), "serve", "--home", str(home), *serve_args], log, env)
    listen_file = home / "listen.json"
    wait_until(listen_file.exists, "edge", proc, log)
    return int(json.loads(listen_file.read_text())["https"].rsplit(":", 1)[1])


def create_tunnel(tmp: Path, edge_home: Path, edge_port: int, origin_port: int, env: dict) -> Path:
    """Create an account, log in, create and route the tunnel; return the config.yml path."""
    token = cli([str(BIN / "burrow-edge"), "account", "create", "alice", "--home", str(edge_home)], env).strip().splitlines()[-1]
    burrow = str(BIN / "burrow")
    cli([burrow, "tunnel", "login", f"https://127.0.0.1:{edge_port}", "--token", token, "--ca-file", str(edge_home / "ca.pem")], env)
    cli([burrow, "tunnel", "create", TUNNEL_NAME], env)
    cli([burrow, "tunnel", "route", "dns", TUNNEL_NAME, HOSTNAME], env)
    config = tmp / "config.yml"
    config.write_text(
        f"tunnel: {TUNNEL_NAME}\n"
        "ingress:\n"
        f"  - hostname: {HOSTNAME}\n"
        f"    service: http://127.0.0.1:{origin_port}\n"
        "  - service: http_status:404\n"
    )
    return config


def start_connector(stack: contextlib.ExitStack, tmp: Path, config: Path, env: dict, sessions: int = HA_CONNECTIONS) -> None:
    """Run the connector with `sessions` HA connections; return once all are registered."""
    log = tmp / "connector.log"
    cmd = [str(BIN / "burrow"), "tunnel", "run", "--config", str(config), "--grace-period", "1",
           "--ha-connections", str(sessions), TUNNEL_NAME]
    proc = start(stack, cmd, log, env)
    wait_until(lambda: log.read_text().count("tunnel.registered") >= sessions, "connector", proc, log)


@contextlib.contextmanager
def running_stack(mb: int) -> Iterator[Endpoints]:
    """Origin + edge + connector in a temp dir; everything stopped and removed on exit."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="burrow-bench-")))
        env = {**os.environ, "BURROW_HOME": str(tmp / "conn")}
        edge_home = tmp / "E"
        origin_port = start_origin(stack, tmp, env)
        edge_port = start_edge(stack, edge_home, env)
        start_connector(stack, tmp, create_tunnel(tmp, edge_home, edge_port, origin_port, env), env)
        upload_file = tmp / "upload.bin"
        with upload_file.open("wb") as f:
            f.truncate(mb * MIB)
        yield Endpoints(origin_port, edge_port, edge_home / "ca.pem", upload_file)


# ---------------------------------------------------------------- measurements


def load(target: Target, args: argparse.Namespace) -> LoadResult:
    """Run the small-GET load against `target`."""
    return trio.run(
        lambda: run_load(target, requests=args.requests, connections=args.connections, time_cap=args.duration_cap)
    )


def load_targets(ends: Endpoints) -> tuple[Target, Target]:
    """The direct and the tunnel target for /small."""
    direct = Target("127.0.0.1", ends.origin_port, "/small", f"127.0.0.1:{ends.origin_port}")
    tls = ssl.create_default_context(cafile=str(ends.ca_file))
    tls.set_alpn_protocols(["http/1.1"])
    return direct, Target("127.0.0.1", ends.edge_port, "/small", HOSTNAME, tls)


def curl(url: str, extra: list[str], cap: float) -> dict:
    """Run one bounded curl transfer; return its write-out variables, with an "error" on failure."""
    fields = ["http_code", "size_download", "size_upload", "speed_download", "speed_upload"]
    write_out = " ".join(f"%{{{name}}}" for name in fields)
    cmd = ["curl", "-sS", "--http1.1", "--max-time", str(cap), "-w", write_out, *extra, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=cap + 10)
    values = done.stdout.split()[-len(fields):]
    if len(values) != len(fields):  # curl died before its write-out
        values = ["0"] * len(fields)
    stats = dict(zip(fields, map(float, values)))
    stats["error"] = done.stderr.strip() if done.returncode else ""
    return stats


def download(base: str, extra: list[str], mb: int, cap: float) -> tuple[float | None, str]:
    """Single-stream download of `mb` MiB: (MiB/s or None, problem)."""
    stats = curl(f"{base}/blob?mb={mb}", ["-o", os.devnull, *extra], cap)
    if stats["error"] or stats["http_code"] != 200 or stats["size_download"] != mb * MIB:
        return None, f"download {base}: status {stats['http_code']:.0f}, {stats['size_download']:.0f} bytes {stats['error']}"
    return stats["speed_download"] / MIB, ""


def upload(base: str, extra: list[str], ends: Endpoints, mb: int, cap: float) -> tuple[float | None, str]:
    """Single-stream POST of `mb` MiB to /sink: (MiB/s or None, problem)."""
    answer = ends.upload_file.with_suffix(".answer")
    body = ["-T", str(ends.upload_file), "-X", "POST", "-H", "Expect:", "-o", str(answer)]
    stats = curl(f"{base}/sink", [*body, *extra], cap)
    counted = answer.read_text().strip() if answer.exists() else ""
    if stats["error"] or stats["http_code"] != 200 or counted != str(mb * MIB):
        return None, f"upload {base}: status {stats['http_code']:.0f}, origin counted {counted or '?'} bytes {stats['error']}"
    return stats["speed_upload"] / MIB, ""


def load_notes(name: str, result: LoadResult, args: argparse.Namespace) -> list[str]:
    """Warnings about a load run that did not finish cleanly."""
    notes = []
    if result.errors:
        notes.append(f"{name}: {result.errors} failed requests")
    if result.timed_out:
        notes.append(f"{name}: hit the {args.duration_cap:.0f}s cap after {result.completed} requests")
    return notes


def measure(ends: Endpoints, args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    """Run every measurement, direct then tunnel; return the rows and any problems."""
    direct_target, tunnel_target = load_targets(ends)
    direct, tunnel = load(direct_target, args), load(tunnel_target, args)
    notes = load_notes("direct", direct, args) + load_notes("tunnel", tunnel, args)
    rows = [
        Row(f"small GET, {args.connections} conns", "req/s", direct.rate, tunnel.rate),
        Row("small GET latency p50", "ms", direct.percentile(0.5) * 1e3, tunnel.percentile(0.5) * 1e3),
        Row("small GET latency p99", "ms", direct.percentile(0.99) * 1e3, tunnel.percentile(0.99) * 1e3),
    ]
    tunnel_curl = ends.curl_tunnel_args()
    transfers = [
        ("download, 1 stream", download(ends.direct_base, [], args.mb, args.duration_cap),
         download(ends.tunnel_base, tunnel_curl, args.mb, args.duration_cap)),
        ("upload, 1 stream", upload(ends.direct_base, [], ends, args.mb, args.duration_cap),
         upload(ends.tunnel_base, tunnel_curl, ends, args.mb, args.duration_cap)),
    ]
    for metric, (direct_rate, direct_note), (tunnel_rate, tunnel_note) in transfers:
        rows.append(Row(f"{metric} {args.mb} MiB", "MiB/s", direct_rate, tunnel_rate))
        notes += [note for note in (direct_note, tunnel_note) if note]
    return rows, notes


# ---------------------------------------------------------------- report


def _cell(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def print_table(rows: list[Row], notes: list[str]) -> None:
    """The human-readable report."""
    print(f"{'metric':<32} {'unit':<6} {'direct':>10} {'tunnel':>10} {'tunnel/direct':>14}")
    for row in rows:
        print(f"{row.metric:<32} {row.unit:<6} {_cell(row.direct):>10} {_cell(row.tunnel):>10} {_cell(row.ratio, 3):>14}")
    for note in notes:
        print(f"note: {note}")


def report_json(rows: list[Row], notes: list[str], args: argparse.Namespace) -> str:
    """The same figures as one JSON line."""
    def num(value: float | None) -> float | None:
        return None if value is None or math.isnan(value) else round(value, 4)

    return json.dumps({
        "params": {"requests": args.requests, "connections": args.connections, "mb": args.mb, "duration_cap": args.duration_cap},
        "cpus": os.cpu_count(),
        "metrics": [
            {"metric": r.metric, "unit": r.unit, "direct": num(r.direct), "tunnel": num(r.tunnel), "ratio": num(r.ratio)}
            for r in rows
        ],
        "notes": notes,
    })


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Burrow tunnel vs. direct origin benchmark (loopback only).")
    parser.add_argument("--requests", type=int, default=5000, help="small GETs per load run (default 5000)")
    parser.add_argument("--connections", type=int, default=50, help="keep-alive connections (default 50)")
    parser.add_argument("--mb", type=int, default=200, help="MiB per download/upload (default 200)")
    parser.add_argument("--duration-cap", type=float, default=60.0, help="seconds per measurement at most (default 60)")
    parser.add_argument("--json", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args()
    if args.requests < 1 or args.connections < 1 or args.mb < 1 or args.duration_cap <= 0:
        parser.error("--requests, --connections, --mb and --duration-cap must be positive")
    return args


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # tear down on SIGTERM as on Ctrl-C
    try:
        with running_stack(args.mb) as ends:
            rows, notes = measure(ends, args)
    except BenchError as exc:
        print(f"bench setup failed: {exc}", file=sys.stderr)
        return 1
    notes.append(
        f"client, origin, edge and connector all run on this machine ({os.cpu_count()} CPUs) and compete for them; "
        "ratios matter more than absolute figures"
    )
    print_table(rows, notes)
    line = report_json(rows, notes, args)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
