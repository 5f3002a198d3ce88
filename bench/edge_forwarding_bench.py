"""Forwarding between edges: what the extra hop costs, measured against the direct path in the
same run (issue 18).

Starts a throwaway PostgreSQL (tests/pg.py) and 2 real edges on 127.0.0.11-12 sharing it, a
connector with `--ha-connections 1` (its one session on edge-1) and the tests' origin, then:

1. reference: keep-alive GETs through edge-1, which holds the session (bench/loadgen.py);
2. the same through edge-2, which forwards every request to edge-1;
3. one large upload (`--upload-mib`) through edge-2 with curl: edge-2's peak RSS before and after
   (VmHWM), to show that a forwarded body streams with bounded memory.

Prints the figures (median over `--rounds`), then the same as JSON on the last line.

    .venv/bin/python bench/edge_forwarding_bench.py [--rounds 3] [--requests 3000] [--upload-mib 256]
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import trio  # noqa: E402

from bench.loadgen import Target, run_load  # noqa: E402
from tests.e2e.cluster import EDGE_IPS, start_cluster  # noqa: E402
from tests.e2e.conftest import ZONE, start_origin  # noqa: E402
from tests.pg import PgServer  # noqa: E402

APP = f"app.{ZONE}"
CONNECTIONS = 20
TIME_CAP = 60.0  # seconds per load run, whatever the speed


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load(edge, requests: int) -> tuple[float, float, int]:
    """(requests/s, median latency ms, errors) of GETs through `edge`."""
    context = ssl.create_default_context(cafile=str(edge.ca))
    target = Target(edge.ip, edge.https_port, "/", APP, context)
    result = trio.run(lambda: run_load(target, requests=requests, connections=CONNECTIONS, time_cap=TIME_CAP))
    return result.rate, result.percentile(0.5) * 1000, result.errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--upload-mib", type=int, default=256)
    opts = parser.parse_args()
    pg = PgServer(Path(tempfile.mkdtemp(prefix="burrow-pg-")))
    pg.start()
    tmp = Path(tempfile.mkdtemp(prefix="burrow-forwarding-"))
    try:
        cluster = start_cluster(tmp, pg, ips=EDGE_IPS[:2], serve_args=("--log-level", "warning"))
        try:
            first, second = cluster.edges
            env = first.login("alice")
            first.cli("burrow", "tunnel", "create", "web", env=env)
            first.cli("burrow", "tunnel", "route", "dns", "web", APP, env=env)
            origin, origin_port = start_origin(tmp, env)
            first.procs.append(origin)
            config = Path(env["BURROW_HOME"]) / "config.yml"
            config.write_text(f"tunnel: web\ningress:\n  - service: http://127.0.0.1:{origin_port}\n")
            connector = first.start(["burrow", "tunnel", "run", "--config", config, "--ha-connections", "1", "web"], "connector", env)
            connector.wait_for_log(r"tunnel\.registered index=0 \S+ edge=127\.0\.0\.11:")
            time.sleep(6)  # edge-2 learns of edge-1's run at its next heartbeat (5 s)
            load(second, 200)  # warm-up: the edge-to-edge connection is opened here
            direct, forwarded = [], []
            for _ in range(opts.rounds):
                direct.append(load(first, opts.requests))
                forwarded.append(load(second, opts.requests))
            rss_before = peak_rss_mib(second.proc.pid)
            upload = subprocess.run(
                f"head -c {opts.upload_mib * 1024 * 1024} /dev/zero | curl -sS --http1.1 --max-time 300 --cacert {second.ca} "
                f"--resolve {APP}:{second.https_port}:{second.ip} -T - -X POST https://{APP}:{second.https_port}/upload",
                shell=True, capture_output=True, timeout=330,
            )
            rss_after = peak_rss_mib(second.proc.pid)
        finally:
            cluster.stop()
        rate_direct = statistics.median(rate for rate, _, _ in direct)
        rate_forwarded = statistics.median(rate for rate, _, _ in forwarded)
        figures = {
            "rounds": opts.rounds,
            "requests_per_round": opts.requests,
            "connections": CONNECTIONS,
            "direct_req_per_s": round(rate_direct),
            "forwarded_req_per_s": round(rate_forwarded),
            "ratio": round(rate_forwarded / rate_direct, 2) if rate_direct else None,
            "direct_p50_ms": round(statistics.median(p50 for _, p50, _ in direct), 1),
            "forwarded_p50_ms": round(statistics.median(p50 for _, p50, _ in forwarded), 1),
            "errors": sum(errors for _, _, errors in direct + forwarded),
            "upload_mib": opts.upload_mib,
            "upload_answer": upload.stdout.decode(errors="replace").strip()[:120],
            "edge2_peak_rss_mib_before_upload": round(rss_before, 1),
            "edge2_peak_rss_mib_after_upload": round(rss_after, 1),
        }
        for key, value in figures.items():
            print(f"{key}: {value}")
        print(json.dumps(figures))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
