"""Large transfers through Burrow against nginx-tls, in one run: MB/s and CPU per GiB.

One curl download of the origin's --mib MiB file and one curl upload of as many bytes
(HTTP/1.1 over TLS), through the edge + connector and through nginx as a TLS reverse proxy
to the same origin (bench/peers.py starts both, as `bench/run` does), alternating each
round. Servers are pinned to core 0 and curl to core 1. Prints, per configuration, the
median MB/s with its ratio to nginx-tls, and the CPU seconds per GiB moved of the edge and
of the connector (user + system, from /proc).

--before DIR also measures the Burrow code in DIR (e.g. `git archive REV | tar -x -C DIR`)
in the same run, as "burrow-before": the edge and connector import Burrow from PYTHONPATH.

    .venv/bin/python bench/transfer_bench.py [--mib 256] [--rounds 3] [--before DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import figures
from figures import MB, Params
from peers import Front, Peers
from tunnel_bench import MIB, BenchError

GIB = 1024 * MIB
REFERENCE = "nginx-tls"


def transfer(front: Front, p: Params, upload: bool) -> dict[str, float | None]:
    """One transfer: MB/s and the CPU seconds per GiB of each watched process (edge, connector)."""
    pids = dict(front.watched)
    before = {label: figures.cpu_seconds([pid]) for label, pid in pids.items()}
    if upload:
        stats = figures._curl(front, p, "/sink", ["-T", str(p.upload_file), "-H", "Expect:", "-o", os.devnull])
        moved, speed, ok = stats["size_upload"], stats["speed_upload"], 200 <= stats["http_code"] < 300
    else:
        stats = figures._curl(front, p, "/blob", ["-o", os.devnull])
        moved, speed, ok = stats["size_download"], stats["speed_download"], stats["http_code"] == 200
    cpu = {label: figures.cpu_seconds([pid]) - before[label] for label, pid in pids.items()}
    if not ok or moved != p.mb * MIB:
        raise BenchError(f"{front.name} {'upload' if upload else 'download'}: {moved:.0f} of {p.mb * MIB} bytes, "
                         f"status {stats['http_code']:.0f} {stats['error']}")
    return {"mbs": speed / MB, **{f"{label}_s_per_gib": cpu[label] * GIB / moved for label in pids}}


def measure(front: Front, p: Params) -> dict[str, dict[str, float | None]]:
    return {"download": transfer(front, p, upload=False), "upload": transfer(front, p, upload=True)}


def median(runs: list[dict], direction: str, key: str) -> float | None:
    values = [run[direction].get(key) for run in runs if run[direction].get(key) is not None]
    return statistics.median(values) if values else None


def table(runs: dict[str, list[dict]], mib: int) -> str:
    lines = [f"| configuration | {mib} MiB download MB/s | × nginx-tls | edge CPU s/GiB | connector CPU s/GiB "
             f"| {mib} MiB upload MB/s | × nginx-tls | edge CPU s/GiB | connector CPU s/GiB |",
             "|---|" + "---:|" * 8]
    for name, config_runs in runs.items():
        cells = []
        for direction in ("download", "upload"):
            speed, reference = median(config_runs, direction, "mbs"), median(runs[REFERENCE], direction, "mbs")
            cells += [f"{speed:,.0f}", f"{speed / reference:.3f}×" if reference else "—"]
            for label in ("front", "back"):
                value = median(config_runs, direction, f"{label}_s_per_gib")
                cells.append("—" if value is None else f"{value:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    rounds = len(runs[REFERENCE])
    lines.append(f"\nMedians of {rounds} round(s); CPU = user + system seconds of the process per GiB moved.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB per download and per upload (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--transfer-cap", type=float, default=60.0, help="seconds per transfer at most (default 60)")
    parser.add_argument("--before", type=Path, help="also measure the Burrow code in this directory (PYTHONPATH)")
    parser.add_argument("--json", type=Path, help="also write every round's figures here")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin servers to core 0, curl to core 1")
    args = parser.parse_args()
    if args.mib < 1 or args.rounds < 1 or not 0 < args.transfer_cap <= 600:
        parser.error("need --mib ≥ 1, --rounds ≥ 1, --transfer-cap in (0, 600]")
    if args.before and not (args.before / "shared" / "transport.py").is_file():
        parser.error(f"--before {args.before}: no Burrow source there (shared/transport.py)")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    client: tuple[str, ...] = ()
    if args.pin and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})  # every server started below inherits core 0
        client = ("taskset", "-c", "1")
    configs = [REFERENCE, "burrow"] + (["burrow-before"] if args.before else [])
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="burrow-transfer-")))
            env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW") and key != "PYTHONPATH"}
            peers = Peers(stack, tmp, env, args.mib)
            peers.start_nginx()
            upload_file = tmp / "upload.bin"
            with upload_file.open("wb") as f:
                f.truncate(args.mib * MIB)
            p = Params(1, args.mib, 1, args.transfer_cap, client, upload_file)
            for round_index in range(args.rounds):
                for name in configs:
                    print(f"round {round_index + 1}/{args.rounds}: {name} …", file=sys.stderr)
                    with contextlib.ExitStack() as peer_stack:
                        front = peers.fronts[REFERENCE]
                        if name != REFERENCE:
                            work = tmp / f"{name}-{round_index + 1}"
                            work.mkdir()
                            peers.env = {**env, "PYTHONPATH": str(args.before.resolve())} if name == "burrow-before" else env
                            peers.start_burrow(peer_stack, work)
                            front = peers.fronts["burrow"]
                        runs[name].append(measure(front, p))
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps({"mib": args.mib, "rounds": runs}, indent=1) + "\n")
    print(table(runs, args.mib))
    return 0


if __name__ == "__main__":
    sys.exit(main())
