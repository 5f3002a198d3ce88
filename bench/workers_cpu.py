"""`burrow-edge serve --workers N` against one pinned worker, in the same run (issue 15, every core).

Same origin (the suite's nginx, pinned to core 0), same client (h2load, HTTP/1.1, 50 keep-alive
connections, pinned to core 1), one fresh edge + connector per configuration and round:

    w1-pinned   --workers 1, edge and connector pinned to core 0 (the suite's `burrow` row)
    w1          --workers 1, unpinned (both cores): what unpinning alone changes
    w2          --workers 2, unpinned; the connector's 4 HA sessions spread over the workers by
                the kernel's SO_REUSEPORT hash (a worker without one forwards)
    w2-fwd      --workers 2, unpinned, 1 HA session: about half the requests are forwarded

Prints, per configuration, the median req/s over --rounds, its ratio to w1-pinned, the
server CPU (edge, its workers and the connector: utime+stime) per request in µs, and the
share of requests forwarded between workers (the edge's /metrics). The last line is JSON.

    .venv/bin/python bench/workers_cpu.py [--rounds 3] [--load-seconds 5] [--configs w1-pinned,w2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import figures
from figures import Params
from peers import Peers, cpu_affinity, descendants, edge_counts

CONFIGS = {  # name: (workers, HA sessions, pinned to core 0)
    "w1-pinned": (1, 4, True),
    "w1": (1, 4, False),
    "w2": (2, 4, False),
    "w2-fwd": (2, 1, False),
}
REFERENCE = "w1-pinned"
SERVER_CORE, CLIENT_CORE = 0, 1


def measure(config: str, peers: Peers, p: Params) -> dict:
    workers, sessions, pinned = CONFIGS[config]
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"burrow-{config}-")))
        with cpu_affinity({SERVER_CORE} if pinned else set(range(os.cpu_count() or 1))):  # the servers inherit it
            peers.start_burrow(stack, work, config, workers, sessions, ("--access-log", "off"))
        front = peers.fronts[config]
        edge_pid, connector_pid = front.watched["front"], front.watched["back"]
        servers = [edge_pid, connector_pid, *descendants(edge_pid)]
        before, counts_before = figures.cpu_seconds(servers), edge_counts(front)
        rps, note = figures.small_get_h1(front, p)
        cpu = figures.cpu_seconds(servers) - before
        counts = edge_counts(front)
    requests, forwarded = counts.requests - counts_before.requests, counts.forwarded - counts_before.forwarded
    return {
        "rps": rps, "cpu_us": cpu / requests * 1e6 if requests else None,
        "forwarded": forwarded / requests if requests else None, "note": note,
    }


def median(values: list) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load-seconds", type=int, default=5)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated among {', '.join(CONFIGS)}")
    args = parser.parse_args()
    selected = [name for name in args.configs.split(",") if name in CONFIGS]
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset") or not shutil.which("h2load"):
        print("needs 2 cores, taskset and h2load (nghttp2-client)", file=sys.stderr)
        return 2
    runs: dict[str, list[dict]] = {name: [] for name in selected}
    env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="burrow-workers-")))
        os.sched_setaffinity(0, {SERVER_CORE})
        peers = Peers(stack, tmp, env, 1)
        peers.start_nginx()  # the origin, on the servers' core
        p = Params(args.load_seconds, 1, 1000, 60.0, ("taskset", "-c", str(CLIENT_CORE)), tmp / "unused")
        for round_index in range(args.rounds):
            for name in selected:
                print(f"round {round_index + 1}/{args.rounds}: {name} …", file=sys.stderr)
                runs[name].append(measure(name, peers, p))
    result = {name: {key: median([run[key] for run in runs[name]]) for key in ("rps", "cpu_us", "forwarded")} for name in selected}
    reference = result.get(REFERENCE, {}).get("rps")
    print(f"{'config':<10} {'req/s':>8} {'× ' + REFERENCE:>13} {'CPU µs/req':>11} {'forwarded':>9}")
    for name, figures_ in result.items():
        rps, cpu, forwarded = figures_["rps"], figures_["cpu_us"], figures_["forwarded"]
        times = f"{rps / reference:.2f}×" if rps and reference else "–"
        print(f"{name:<10} {rps or 0:>8.0f} {times:>13} {cpu or 0:>11.0f} {(forwarded or 0) * 100:>8.0f}%")
    notes = [f"{name}: {run['note']}" for name in selected for run in runs[name] if run["note"]]
    for note in notes:
        print("note:", note)
    print(json.dumps({"rounds": args.rounds, "load_seconds": args.load_seconds, "results": result, "runs": runs, "notes": notes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
