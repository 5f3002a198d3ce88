"""Burrow against the alternatives, side by side in one run (issue 9's benchmark suite).

Configurations, all on loopback, same origin (nginx: 64-byte /small, a 256 MiB file),
same client (h2load for loads, curl for transfers and new connections), servers
pinned to core 0 and clients to core 1:

    direct     client → origin
    nginx-tls  client → nginx TLS reverse proxy → origin
    ssh-R      client → nginx TLS → `ssh -R` through a private sshd → origin
    pagekite   client → nginx TLS → pagekite.py front end → back end → origin
    burrow     client → edge → tunnel session → connector → origin
    burrow-w2  the same with `burrow-edge serve --workers 2`, edge and connector on both
               cores (unpinned); the line under the table gives its ratios to `burrow`

Writes results.json and results.md (medians of --rounds, ratios to direct and to
nginx-tls from the same run) into --out and prints the table. See docs/performance.md.
Its last row is DNS (bench/dns_bench.py): the edge's UDP queries/s for --dns-names routed
names on core 0, with its ratio to knotd and nsd serving the same zone in the same run.

    bench/run [--rounds 3] [--load-seconds 5] [--mb 256] [--configs direct,burrow] [--dns-names 100000] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns_bench
import figures
from figures import Params
from peers import Front, Peers, Unavailable, answers, cpu_affinity, descendants, edge_counts
from tunnel_bench import MIB, BenchError

CONFIGS = ("direct", "nginx-tls", "ssh-R", "pagekite", "burrow", "burrow-w2")
REFERENCES = ("direct", "nginx-tls")
WORKERS, ONE_WORKER = "burrow-w2", "burrow"  # `--workers 2` unpinned, and the pinned one-worker edge it is compared with
WORKERS_TARGET = 1.7  # issue 15: --workers 2 unpinned ≥ 1.7× the pinned one-worker small GET h1 figure
# Figures a configuration leaves out ("—"): new TLS connections are serial, one worker at a time.
UNMEASURED = {WORKERS: ("new_tls_connections",)}
# key, label ({rate}/{mb} filled in), unit
FIGURES = (
    ("h1_rps", "small GET, HTTP/1.1, 50 conns", "req/s"),
    ("h2_rps", "small GET, HTTP/2, 10×10", "req/s"),
    ("p50_ms", "p50 at {rate} req/s, 10 conns", "ms"),
    ("p99_ms", "p99 at {rate} req/s, 10 conns", "ms"),
    ("download_mbs", "{mb} MiB download, one stream", "MB/s"),
    ("upload_mbs", "{mb} MiB upload, one stream", "MB/s"),
    ("tls_cps", "new TLS connection per request, serial", "req/s"),
    ("cpu_us", "server CPU per small HTTP/1.1 request", "µs"),
    ("rss_front_mib", "peak RSS, tunnel front end (edge)", "MiB"),
    ("rss_back_mib", "peak RSS, tunnel back end (connector)", "MiB"),
)
APT_PACKAGES = {"nginx": "nginx", "pagekite": "pagekite", "h2load": "nghttp2-client", "sshd": "openssh-server",
                "ssh": "openssh-client", "curl": "curl", "dnsperf": "dnsperf"}
RECOVERY_S = 3.0
ROOT = Path(__file__).resolve().parent.parent


def ensure_programs(install: bool) -> list[str]:
    """Install missing peers with apt-get when allowed and possible; return notes."""
    missing = [name for name in APT_PACKAGES if not (shutil.which(name) or Path(f"/usr/sbin/{name}").exists())]
    if not missing:
        return []
    packages = sorted({APT_PACKAGES[name] for name in missing})
    if not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return [f"not installed: {', '.join(packages)} (run as root: apt-get install -y {' '.join(packages)})"]
    print(f"installing {' '.join(packages)} with apt-get …", file=sys.stderr)
    done = subprocess.run(["apt-get", "install", "-y", "-q", *packages], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return [f"apt-get install {' '.join(packages)} failed: {done.stderr.strip()[-300:]}"]
    return []


def wait_answering(front: Front) -> bool:
    """Give a front that a previous load left stuck (pagekite) RECOVERY_S to answer again."""
    deadline = time.monotonic() + RECOVERY_S
    while not answers(front):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the workers of `burrow-edge serve --workers N`)."""
    return [pid, *descendants(pid)]


def measure(front: Front, p: Params, unmeasured: tuple[str, ...] = ()) -> tuple[dict[str, float | None], list[str]]:
    """Every figure for one configuration, once (those in `unmeasured`: None). Peak RSS is per
    watched process, with its descendants' added."""
    values: dict[str, float | None] = {}
    notes: list[str] = []
    peaks: dict[str, float] = {}
    broken: list[str] = []

    def run(function, *args):
        if broken or function.__name__ in unmeasured:
            return None
        dead = [label for label, pid in front.watched.items() if not figures.alive(pid)]
        if dead or not wait_answering(front):
            why = f"the {' and '.join(dead)} process exited" if dead else f"no answer for {RECOVERY_S:.0f}s"
            notes.append(f"{front.name}: {why} before {function.__name__}; the remaining figures are not measured")
            broken.append(function.__name__)
            return None
        trees = {label: process_tree(pid) for label, pid in front.watched.items()}
        figures.reset_peak_rss([pid for tree in trees.values() for pid in tree])
        value, note = function(front, p, *args)
        for label, tree in trees.items():
            peaks[label] = max(peaks.get(label, 0.0), sum(figures.peak_rss_mib(pid) or 0.0 for pid in tree))
        if note:
            notes.append(f"{front.name}: {note}")
        return value

    # The heavy loads last: a peer they break (pagekite) still gets its other figures.
    values["download_mbs"] = run(figures.download)
    values["upload_mbs"] = run(figures.upload)
    values["tls_cps"] = run(figures.new_tls_connections)
    latency = run(figures.latency_at_rate)
    values["p50_ms"], values["p99_ms"] = latency if latency else (None, None)
    servers = descendants()
    cpu_before = figures.cpu_seconds(servers)
    values["h1_rps"] = run(figures.small_get_h1)
    cpu = figures.cpu_seconds(servers) - cpu_before
    values["cpu_us"] = cpu / (values["h1_rps"] * p.load_s) * 1e6 if values["h1_rps"] else None
    values["h2_rps"] = run(figures.small_get_h2, values["h1_rps"])
    values["rss_front_mib"] = peaks.get("front")
    values["rss_back_mib"] = peaks.get("back")
    return values, notes


def spread(front: Front) -> dict[str, float | list[float]]:
    """How the requests of a `--workers N` edge went so far: each worker's share of them, and the
    share one worker forwarded to another (empty when its /metrics does not answer)."""
    try:
        counts = edge_counts(front)
    except OSError:
        return {}
    if not counts.requests:
        return {}
    return {"per_worker": [counts.per_worker[worker] / counts.requests for worker in sorted(counts.per_worker)],
            "forwarded": counts.forwarded / counts.requests}


def median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def machine() -> dict:
    def version(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "missing"
        return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {
        "cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
        "nginx": version(["nginx", "-v"]), "h2load": version(["h2load", "--version"]),
        "openssh": version(["ssh", "-V"]), "curl": version(["curl", "--version"]),
        "burrow": version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 1 else f"{value:.2g}"


def ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.3g}×" if value is not None and reference else "—"


def markdown(result: dict) -> str:
    """Rows = figures; each cell: median (ratio to direct / ratio to nginx-tls)."""
    params, medians, skipped = result["params"], result["medians"], result["skipped"]
    lines = ["| figure | unit | " + " | ".join(CONFIGS) + " |", "|---|---|" + "---:|" * len(CONFIGS)]
    for key, label, unit in FIGURES:
        cells = []
        for config in CONFIGS:
            if config in skipped:
                cells.append("skipped")
                continue
            value = medians[config][key]
            refs = [medians.get(ref, {}).get(key) for ref in REFERENCES]
            cells.append(fmt(value) if value is None else f"{fmt(value)} ({ratio(value, refs[0])} / {ratio(value, refs[1])})")
        lines.append(f"| {label.format(**params)} | {unit} | " + " | ".join(cells) + " |")
    if "dns" in result:
        lines.append(dns_row(result["dns"]))
    lines.append("")
    lines.append(f"Cells: median of {params['rounds']} round(s) (ratio to direct / ratio to nginx-tls, same run); "
                 "— = not applicable or not measured.")
    if WORKERS in medians:
        lines.append(workers_line(medians, result["workers_spread"], params["pinned"]))
    if "dns" in result:
        lines.append("DNS row: the edge's UDP queries/s, median of one timed run per round (ratio to knotd / nsd "
                     "serving the same zone on the same core, same run; bench/dns_bench.py).")
    lines += [f"- skipped {config}: {why}" for config, why in skipped.items()]
    lines += [f"- note: {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def dns_row(dns: dict) -> str:
    """The DNS row: the (one-worker) burrow cell holds its queries/s and its ratios to knotd and nsd."""
    label = f"DNS, {dns.get('names', 0):,} routed names, UDP A"
    if "skipped" in dns:
        cell = f"skipped: {dns['skipped']}"
    else:
        ratios = [f"{ratio(dns['burrow']['qps'], dns[ref].get('qps'))} {ref}" for ref in dns_bench.REFERENCES]
        cell = f"{fmt(dns['burrow']['qps'])} ({' / '.join(ratios)})"
    cells = [cell if config == ONE_WORKER else "—" for config in CONFIGS]
    return f"| {label} | queries/s | " + " | ".join(cells) + " |"


def workers_line(medians: dict, spreads: list[dict], pinned: bool) -> str:
    """burrow-w2 against the one-worker burrow of the same run (issue 15's `--workers 2` target)."""
    mine, one = medians[WORKERS], medians.get(ONE_WORKER, {})
    h1 = mine["h1_rps"] / one["h1_rps"] if mine["h1_rps"] and one.get("h1_rps") else None
    verdict = "—" if h1 is None else f"{h1:.3g}× (issue 15's target ≥ {WORKERS_TARGET}×: {'met' if h1 >= WORKERS_TARGET else 'not met'})"
    per_round = "; ".join(" / ".join(f"{share:.0%}" for share in round_["per_worker"]) + f", {round_['forwarded']:.0%} forwarded"
                          for round_ in spreads if round_) or "—"
    return (f"{WORKERS} column: `burrow-edge serve --workers 2`, edge and connector on both cores, against the "
            f"{'pinned ' if pinned else ''}one-worker {ONE_WORKER} column of the same run: small GET HTTP/1.1 {verdict}, "
            f"HTTP/2 {ratio(mine['h2_rps'], one.get('h2_rps'))}, server CPU per request {ratio(mine['cpu_us'], one.get('cpu_us'))}. "
            f"Its requests answered by worker 0 / 1, per round: {per_round}. Its peak RSS of the edge adds up the "
            "supervisor's and the workers'; new TLS connections (serial, one worker at a time) are not measured for it.")


def round_order(configs: list[str], round_index: int, rounds: int) -> list[str]:
    """The configurations in the order round `round_index` measures them: each round starts
    `len(configs) / rounds` further along, so that no configuration is always measured late
    in a round (on a machine that slows down under sustained load, that would count against it)."""
    start = round_index * len(configs) // rounds % len(configs) if configs else 0
    return configs[start:] + configs[:start]


def measure_dns(args: argparse.Namespace) -> dict:
    try:
        return dns_bench.run(args.dns_names, args.dns_seconds, args.rounds, check_queries=min(args.dns_names, 5000))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return {"names": args.dns_names, "skipped": str(exc).splitlines()[0]}


def run_suite(args: argparse.Namespace) -> dict:
    notes = ensure_programs(args.install)
    if not shutil.which("h2load"):
        raise BenchError("h2load not found: apt-get install -y nghttp2-client")
    client: tuple[str, ...] = ()
    if args.pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        os.sched_setaffinity(0, {0})  # every server this process starts inherits core 0
        client = ("taskset", "-c", "1")
    else:
        notes.append("no CPU pinning (needs 2 cores and taskset); servers and clients share every core")
    selected = [config for config in CONFIGS if config in args.configs]
    skipped = {config: "not selected (--configs)" for config in CONFIGS if config not in selected}
    runs: dict[str, list[dict]] = {config: [] for config in selected}
    spreads: list[dict] = []  # burrow-w2, per round: its requests per worker and forwarded
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="burrow-suite-")))
        env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
        peers = Peers(stack, tmp, env, args.mb)
        peers.start_nginx()

        def start_burrow_workers(stack: contextlib.ExitStack, work: Path) -> None:
            with cpu_affinity(set(range(os.cpu_count() or 1))):  # edge, its workers and the connector: every core
                peers.start_burrow(stack, work, WORKERS, workers=2)

        # A tunnel peer runs only while it is measured: a stuck one (pagekite) must not eat the servers' core.
        starters = {"ssh-R": peers.start_ssh_r, "pagekite": peers.start_pagekite, "burrow": peers.start_burrow,
                    WORKERS: start_burrow_workers}
        upload_file = tmp / "upload.bin"
        with upload_file.open("wb") as f:
            f.truncate(args.mb * MIB)
        p = Params(args.load_seconds, args.mb, args.rate, args.transfer_cap, client, upload_file)
        for round_index in range(args.rounds):
            for config in round_order(selected, round_index, args.rounds):
                if config in skipped:
                    continue
                print(f"round {round_index + 1}/{args.rounds}: {config} …", file=sys.stderr)
                with contextlib.ExitStack() as peer_stack:
                    if config in starters:
                        work = tmp / f"{config}-{round_index + 1}"
                        work.mkdir()
                        try:
                            starters[config](peer_stack, work)
                        except Unavailable as exc:
                            skipped[config] = str(exc)
                            continue
                        except BenchError as exc:
                            notes.append(f"round {round_index + 1}: {config}: setup failed: {str(exc)[:500]}")
                            continue
                    front = peers.fronts[config]
                    values, round_notes = measure(front, p, UNMEASURED.get(config, ()))
                    if config == WORKERS:
                        spreads.append(spread(front))
                runs[config].append(values)
                notes += [f"round {round_index + 1}: {note}" for note in round_notes]
    dns = measure_dns(args) if args.dns_names else None
    for config in selected:
        if config not in skipped and not runs[config]:
            skipped[config] = "setup failed in every round (see the notes)"
    medians = {config: {key: median([run[key] for run in runs[config]]) for key, _, _ in FIGURES}
               for config in selected if config not in skipped}
    return {
        "params": {"rounds": args.rounds, "load_seconds": args.load_seconds, "mb": args.mb, "rate": args.rate,
                   "transfer_cap": args.transfer_cap, "pinned": bool(client)},
        "machine": machine(),
        "elapsed_s": round(time.monotonic() - started, 1),
        "figures": [{"key": key, "label": label, "unit": unit} for key, label, unit in FIGURES],
        "medians": medians,
        "rounds": runs,
        "skipped": skipped,
        "notes": notes,
        "workers_spread": spreads,
        **({"dns": dns} if dns else {}),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Burrow vs. direct, nginx-tls, ssh -R and pagekite on loopback.")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per configuration; medians are reported (default 1, use 3 for real figures)")
    parser.add_argument("--load-seconds", type=int, default=5, help="seconds per h2load run, at most 10 (default 5)")
    parser.add_argument("--mb", type=int, default=256, help="MiB per download/upload (default 256)")
    parser.add_argument("--rate", type=int, default=1000, help="req/s of the latency run (default 1000)")
    parser.add_argument("--transfer-cap", type=float, default=10.0, help="seconds per download/upload at most (default 10)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}")
    parser.add_argument("--dns-names", type=int, default=100_000, help="routed names of the DNS row; 0 leaves it out (default 100,000)")
    parser.add_argument("--dns-seconds", type=int, default=5, help="seconds per timed DNS run, one per round (default 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="directory for results.json and results.md")
    parser.add_argument("--no-install", dest="install", action="store_false", help="never run apt-get for missing peers")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin servers to core 0 and clients to core 1")
    args = parser.parse_args(argv)
    args.configs = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown --configs {', '.join(sorted(unknown))}; choose from {', '.join(CONFIGS)}")
    if args.rounds < 1 or not 1 <= args.load_seconds <= 10 or args.mb < 1 or args.rate < 10 or not 0 < args.transfer_cap <= 60:
        parser.error("need --rounds ≥ 1, --load-seconds 1..10, --mb ≥ 1, --rate ≥ 10, --transfer-cap in (0, 60]")
    if args.dns_names < 0 or not 1 <= args.dns_seconds <= 30:
        parser.error("need --dns-names ≥ 0 and --dns-seconds 1..30")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # tear everything down on SIGTERM as on Ctrl-C
    try:
        result = run_suite(args)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    (args.out / "results.md").write_text(table)
    print(table)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'} in {result['elapsed_s']}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
