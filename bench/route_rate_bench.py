"""Route changes per second one PostgreSQL sustains, with 3 real edges listening (issue 18).

Starts a throwaway PostgreSQL (tests/pg.py: initdb/pg_ctl as an unprivileged user, loopback
only), then measures, in the same run:

1. reference: `--writers` threads adding routes (one `route_dns` transaction each, as the admin
   API does) for `--seconds`, nobody listening;
2. the same with 3 real `burrow-edge serve` processes on 127.0.0.11-13 sharing the database, each
   LISTENing and reloading its zone snapshot on every change;
3. the lag from the last write to the moment every edge's DNS answers it, and the edges' CPU.

Prints the figures, then the same as JSON on the last line.

    .venv/bin/python bench/route_rate_bench.py [--writers 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dnslib import QTYPE, DNSRecord  # noqa: E402

from edge.registry.store import Registry  # noqa: E402
from shared.crypto import mint_secret  # noqa: E402
from tests.e2e.cluster import start_cluster  # noqa: E402
from tests.pg import PgServer  # noqa: E402

ZONE = "example.test"
MAX_ROUTES_PER_PHASE = 200_000  # bound on each phase's writes, whatever the speed


def write_routes(url: str, account_id: str, tunnel_id: str, prefix: str, writers: int, seconds: float) -> tuple[int, str]:
    """Routes added by `writers` threads in `seconds`; (count, the last hostname)."""
    registries = [Registry.open(url) for _ in range(writers)]
    counts = [0] * writers
    last = [""] * writers
    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        while time.monotonic() < deadline and counts[index] < MAX_ROUTES_PER_PHASE // writers:
            host = f"{prefix}-{index}-{counts[index]}.{ZONE}"
            registries[index].route_dns(account_id, tunnel_id, host, ZONE)
            counts[index] += 1
            last[index] = host

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for registry in registries:
        registry.close()
    return sum(counts), max(last)


def answers(ip: str, port: int, name: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        sock.sendto(DNSRecord.question(name, "A").pack(), (ip, port))
        return any(rr.rtype == QTYPE.A for rr in DNSRecord.parse(sock.recv(4096)).rr)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    opts = parser.parse_args()
    pg = PgServer(Path(tempfile.mkdtemp(prefix="burrow-pg-")))
    pg.start()
    tmp = Path(tempfile.mkdtemp(prefix="burrow-route-rate-"))
    try:
        database = pg.create_database()
        url = pg.url(database, tcp=True)
        setup = Registry.open(url)
        account, _ = setup.create_account("bench")
        tunnel = setup.create_tunnel(account.id, "bench", mint_secret())
        setup.close()
        alone, _ = write_routes(url, account.id, tunnel.id, "ref", opts.writers, opts.seconds)
        cluster = start_cluster(tmp, pg, serve_args=("--log-level", "warning"), database=database)
        try:
            pids = [edge.proc.pid for edge in cluster.edges]
            cpu_before = [cpu_seconds(pid) for pid in pids]
            listened, last = write_routes(url, account.id, tunnel.id, "live", opts.writers, opts.seconds)
            written = time.monotonic()
            lags = []
            for edge in cluster.edges:
                while not answers(edge.ip, edge.dns_port, last) and time.monotonic() - written < 60:
                    time.sleep(0.01)
                lags.append(time.monotonic() - written)
            cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before)]
            rss = [rss_mib(pid) for pid in pids]
        finally:
            cluster.stop()
        figures = {
            "writers": opts.writers,
            "seconds": opts.seconds,
            "routes_per_s_alone": round(alone / opts.seconds, 1),
            "routes_per_s_3_edges_listening": round(listened / opts.seconds, 1),
            "ratio": round(listened / alone, 2) if alone else None,
            "routes_in_registry_at_end": alone + listened,
            "lag_to_every_edge_dns_ms_max": round(max(lags) * 1000),
            "edge_cpu_s_during_writes": [round(c, 2) for c in cpu],
            "edge_rss_mib_at_end": [round(r, 1) for r in rss],
        }
        for key, value in figures.items():
            print(f"{key}: {value}")
        print(json.dumps(figures))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
