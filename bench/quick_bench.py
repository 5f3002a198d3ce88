"""Quick-tunnel benchmark: time from starting `burrow tunnel --url` to the first 200.

Starts, in a temporary directory and on loopback only, a `burrow-edge serve --quick-tunnels`
and an origin (tests/e2e/origin.py). Each round times, from the moment the process is
started, until curl gets a 200 through the tunnel:

* quick: `burrow tunnel --url ORIGIN --edge … --ca-file …`, curl at the URL it prints in
  its box (the time includes asking the edge for the tunnel);
* reference, in the same run: `burrow tunnel run --url ORIGIN NAME` of a named tunnel
  created and routed beforehand (not timed), curl at its routed hostname.

curl retries every 50 ms; every wait is bounded. Prints a table, then the same figures
as JSON on the last line.

    .venv/bin/python bench/quick_bench.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.conftest import ZONE, Edge, Proc, start_edge, start_origin  # noqa: E402 - the suite's process helpers

NAMED_HOST = f"named.{ZONE}"
QUICK_URL = re.compile(rf"\|\s+https://([a-z-]+\.quick\.{re.escape(ZONE)})\s+\|")
FIRST_200_TIMEOUT = 60.0
POLL = 0.05


def first_200(edge: Edge, proc: Proc, host_of, started: float) -> float:
    """Seconds from `started` until curl gets 200 from the host `host_of(log)` names (None: not yet)."""
    deadline = started + FIRST_200_TIMEOUT
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SystemExit(f"the connector exited:\n{proc.log()}")
        host = host_of(proc.log())
        if host is not None:
            result = edge.curl(host, "/", "-o", "/dev/null", "-w", "%{http_code}", timeout=5)
            if result.stdout == b"200":
                return time.monotonic() - started
        time.sleep(POLL)
    raise SystemExit(f"no 200 within {FIRST_200_TIMEOUT}s:\n{proc.log()}")


def quick_round(edge: Edge, origin_port: int, n: int) -> float:
    env = edge.connector_env(f"quick-{n}")
    started = time.monotonic()
    proc = edge.start(
        ["burrow", "tunnel", "--url", f"http://127.0.0.1:{origin_port}", "--edge", edge.url, "--ca-file", edge.ca], f"quick-{n}", env
    )
    try:
        return first_200(edge, proc, lambda log: (m := QUICK_URL.search(log)) and m.group(1), started)
    finally:
        proc.stop()


def named_round(edge: Edge, env: dict, origin_port: int, n: int) -> float:
    started = time.monotonic()
    proc = edge.start(["burrow", "tunnel", "run", "--url", f"http://127.0.0.1:{origin_port}", "named"], f"named-{n}", env)
    try:
        return first_200(edge, proc, lambda log: NAMED_HOST, started)
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quick-bench-") as tmp:
        edge = start_edge(Path(tmp), serve_args=("--quick-tunnels", "--quick-tunnels-per-ip", "1000/h"))
        try:
            origin, origin_port = start_origin(Path(tmp), edge.env)
            edge.procs.append(origin)
            env = edge.login("bench")
            edge.cli("burrow", "tunnel", "create", "named", env=env)
            edge.cli("burrow", "tunnel", "route", "dns", "named", NAMED_HOST, env=env)
            quick, named = [], []
            for n in range(args.rounds):  # interleaved, so both see the same machine load
                quick.append(quick_round(edge, origin_port, n))
                named.append(named_round(edge, env, origin_port, n))
        finally:
            for proc in reversed(edge.procs):
                proc.stop()
    figures = {
        "rounds": args.rounds,
        "quick_first_200_s": round(statistics.median(quick), 3),
        "named_first_200_s": round(statistics.median(named), 3),
        "ratio_quick_to_named": round(statistics.median(quick) / statistics.median(named), 2),
        "quick_all_s": [round(x, 3) for x in quick],
        "named_all_s": [round(x, 3) for x in named],
    }
    print(f"{'':34}{'median':>10}  all rounds")
    print(f"{'burrow tunnel --url (quick)':34}{figures['quick_first_200_s']:>9.2f}s  {figures['quick_all_s']}")
    print(f"{'burrow tunnel run (named, ref.)':34}{figures['named_first_200_s']:>9.2f}s  {figures['named_all_s']}")
    print(f"ratio quick / named: {figures['ratio_quick_to_named']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
