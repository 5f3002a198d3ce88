"""100,000 routed hostnames on one edge (issue 18): routing lookups/s, registry load time, edge RSS.

In a temporary directory, loopback only, for each engine of `--engines` (SQLite, and PostgreSQL:
a throwaway server from tests/pg.py, initdb/pg_ctl as an unprivileged user):

1. `burrow-edge init` (with `--database URL` for PostgreSQL), then `--names` CNAME routes to one
   tunnel written in one registry transaction (set-up only; the API writes one per route);
2. registry load time: `Registry.open` + the first zone snapshot (`Registry.zones`), what
   `burrow-edge serve` does first, median of `--runs` in this process;
3. `burrow-edge serve`: seconds from spawn to listening, RSS once listening, and one DNS answer for
   the last routed name; the same edge with no route is the reference measured in the same run
   (ratios 100,000 routes / none).

Then, in this process, routing lookups/s over the SQLite snapshot: the proxy's Host → tunnel
lookup (`normalize_host` + `Router.tunnel_for`) over `--lookups` Host values: every routed name in
turn (hits, more names than the router's answer cache holds), names in the zone that are not
routed (misses), and 1,000 routed names over and over (cached); the reference is a plain dict
lookup of the same names, and the same router over a 1,000-route snapshot shows the cost does not
grow with the number of routes. DNS queries/s at 100,000 names: bench/dns_bench.py --names 100000.

    .venv/bin/python bench/hostnames_bench.py [--names 100000] [--lookups 200000] [--runs 3]
                                              [--engines sqlite,postgresql]

Prints the figures, then the same as JSON on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dnslib import QTYPE, DNSRecord  # noqa: E402

from edge.dns.zone import Zone, Zones, normalize_host  # noqa: E402
from edge.registry.database import timestamp  # noqa: E402
from edge.registry.store import Registry  # noqa: E402
from edge.routing.router import Router  # noqa: E402
from shared.crypto import mint_secret  # noqa: E402
from shared.edge_config import load_edge_config  # noqa: E402
from tests.pg import PgServer  # noqa: E402

BIN = Path(sys.executable).parent
ZONE = "example.test"
ENGINES = ("sqlite", "postgresql")
START_TIMEOUT = 120.0  # seconds for an edge to listen
SMALL = 1_000  # routes of the reference snapshot, and names of the cached pass


def hostname(i: int) -> str:
    return f"host-{i}.{ZONE}"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def init_home(home: Path, database: str | None) -> str:
    """`burrow-edge init` a home (on `database` if given); its registry target (a path or a URL)."""
    subprocess.run(
        [BIN / "burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca",
         "--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0",
         *(["--database", database, "--edge-name", "bench"] if database else [])],
        check=True, capture_output=True, timeout=60, env=clean_env(home),
    )
    return str(load_edge_config(home).registry)


def clean_env(home: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
    env["BURROW_HOME"] = str(home.parent / "nobody")
    return env


def fill(target: str, names: int) -> float:
    """One account, one tunnel and `names` routes to it, in one transaction; seconds taken."""
    started = time.perf_counter()
    registry = Registry.open(target)
    try:
        account, _ = registry.create_account("bench")
        tunnel = registry.create_tunnel(account.id, "bench", mint_secret())
        target_name = Zone(ZONE).tunnel_target(tunnel.id)
        with registry._write() as db:  # set-up only: the API writes one transaction per route
            now = timestamp()
            for i in range(names):
                db.execute(
                    "INSERT INTO records (hostname, type, target, account_id, tunnel_id, created_at) "
                    "VALUES (?, 'CNAME', ?, ?, ?, ?)",
                    (hostname(i), target_name, account.id, tunnel.id, now),
                )
    finally:
        registry.close()
    return time.perf_counter() - started


def load_times(target: str, runs: int, names: int) -> dict:
    """Median seconds of `Registry.open` and of the first zone snapshot, over `runs` fresh opens."""
    opens, snapshots = [], []
    for _ in range(runs):
        started = time.perf_counter()
        registry = Registry.open(target)
        opened = time.perf_counter()
        zones = registry.zones([ZONE])
        snapshots.append(time.perf_counter() - opened)
        opens.append(opened - started)
        registry.close()
        if len(zones.zones[0].records) != names:
            raise RuntimeError(f"the snapshot has {len(zones.zones[0].records)} records, not {names}")
    return {"open_s": round(statistics.median(opens), 3), "snapshot_s": round(statistics.median(snapshots), 3),
            "load_s": round(statistics.median(o + s for o, s in zip(opens, snapshots)), 3)}


@contextmanager
def serving(home: Path) -> Iterator[tuple[int, float, int]]:
    """`burrow-edge serve`; yields (pid, seconds until it listened, DNS port); stopped on exit."""
    listen = home / "listen.json"
    listen.unlink(missing_ok=True)
    started = time.monotonic()
    with open(home.parent / f"{home.name}.log", "wb") as log:
        proc = subprocess.Popen([BIN / "burrow-edge", "serve", "--home", home, "--loglevel", "warning"],
                                stdout=log, stderr=subprocess.STDOUT, env=clean_env(home))
    try:
        while not listen.exists():
            if proc.poll() is not None or time.monotonic() - started > START_TIMEOUT:
                raise RuntimeError(f"the edge did not start; see {home.parent / f'{home.name}.log'}")
            time.sleep(0.02)
        start_s = time.monotonic() - started
        time.sleep(0.2)  # listen.json is written whole, but give the write a moment
        dns_port = int(json.loads(listen.read_text())["dns"].rsplit(":", 1)[1])
        yield proc.pid, start_s, dns_port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def answers(port: int, name: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(DNSRecord.question(name, "A").pack(), ("127.0.0.1", port))
        return any(rr.rtype == QTYPE.A for rr in DNSRecord.parse(sock.recv(4096)).rr)


def edge_figures(home: Path, names: int) -> dict:
    """Start-up seconds and RSS of the edge, RSS again after 2 s; checks the last routed name resolves."""
    with serving(home) as (pid, start_s, dns_port):
        rss_listening = rss_mib(pid)
        if names and not answers(dns_port, hostname(names - 1)):
            raise RuntimeError(f"the edge does not answer {hostname(names - 1)}")
        time.sleep(2)
        return {"start_s": round(start_s, 2), "rss_mib_listening": rss_listening, "rss_mib": rss_mib(pid)}


def engine_figures(engine: str, tmp: Path, names: int, runs: int, pg: PgServer | None) -> dict:
    figures: dict = {}
    for label, count in (("routes", names), ("empty", 0)):
        home = tmp / f"{engine}-{label}"
        database = pg.url(pg.create_database()) if pg else None
        target = init_home(home, database)
        fill_s = fill(target, count)
        if count:
            figures["fill_s"] = round(fill_s, 1)
            figures.update(load_times(target, runs, count))
        figures[f"edge_{label}"] = edge_figures(home, count)
    routes, empty = figures["edge_routes"], figures["edge_empty"]
    figures["start_ratio"] = round(routes["start_s"] / empty["start_s"], 2)
    figures["rss_ratio"] = round(routes["rss_mib"] / empty["rss_mib"], 2)
    figures["kib_per_route"] = round((routes["rss_mib"] - empty["rss_mib"]) * 1024 / names, 2)
    return figures


def rate(lookup: Callable[[str], object], hosts: list[str], count: int) -> tuple[float, int]:
    """Lookups/s of `lookup` over `count` values of `hosts` in turn, and how many found something."""
    found = 0
    started = time.perf_counter()
    for i in range(count):
        found += lookup(hosts[i % len(hosts)]) is not None
    return count / (time.perf_counter() - started), found


def routing_figures(zones: Zones, names: int, lookups: int) -> dict:
    """Host → tunnel lookups/s as the proxy does them (see the module docstring)."""
    tunnel_id = next(iter(zones.zones[0].tunnel_ids))
    small = Zones((Zone(ZONE, {hostname(i): Zone(ZONE).tunnel_target(tunnel_id) for i in range(SMALL)}, frozenset({tunnel_id})),))
    hits = [f"Host-{i}.{ZONE}" for i in range(names)]  # as visitors send them: normalized on the way
    misses = [f"nothing-{i}.{ZONE}" for i in range(names)]
    plain = {hostname(i): tunnel_id for i in range(names)}

    def proxy_lookup(router: Router) -> Callable[[str], str | None]:
        return lambda host: router.tunnel_for(normalize_host(host))

    passes = {
        "reference_dict": (lambda host: plain.get(host.lower()), hits),
        "hits": (proxy_lookup(Router(zones)), hits),
        "misses": (proxy_lookup(Router(zones)), misses),
        "cached": (proxy_lookup(Router(zones)), hits[:SMALL]),
        "hits_1000_routes": (proxy_lookup(Router(small)), hits[:SMALL]),
        "uncached_1000_routes": (lambda host: small.tunnel_for(host), hits[:SMALL]),
        "uncached": (lambda host: zones.tunnel_for(host), hits),
    }
    figures: dict = {"lookups_per_pass": lookups}
    for name, (lookup, hosts) in passes.items():
        per_s, found = rate(lookup, hosts, lookups)
        expected = 0 if name == "misses" else lookups
        if found != expected:
            raise RuntimeError(f"{name}: {found} of {lookups} lookups found a tunnel, {expected} expected")
        figures[f"{name}_per_s"] = round(per_s)
    figures["hits_vs_dict"] = round(figures["hits_per_s"] / figures["reference_dict_per_s"], 3)
    figures["uncached_100k_vs_1k_routes"] = round(figures["uncached_per_s"] / figures["uncached_1000_routes_per_s"], 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=200_000, help="lookups in each routing pass")
    parser.add_argument("--runs", type=int, default=3, help="registry opens timed per engine")
    parser.add_argument("--engines", default=",".join(ENGINES))
    opts = parser.parse_args()
    engines = opts.engines.split(",")
    if unknown := set(engines) - set(ENGINES):
        parser.error(f"unknown --engines {','.join(sorted(unknown))} (choose from {','.join(ENGINES)})")
    if opts.names < SMALL or opts.lookups < 1 or opts.runs < 1:
        parser.error(f"--names must be at least {SMALL}, --lookups and --runs at least 1")
    result: dict = {"names": opts.names, "load_average_before": Path("/proc/loadavg").read_text().split()[:3]}
    with tempfile.TemporaryDirectory(prefix="burrow-hostnames-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        for engine in engines:
            pg = PgServer(Path(tempfile.mkdtemp(prefix="burrow-pg-"))) if engine == "postgresql" else None
            try:
                if pg:
                    pg.start()
                result[engine] = engine_figures(engine, tmp, opts.names, opts.runs, pg)
            finally:
                if pg:
                    pg.stop()
        registry = Registry.open(str(tmp / "sqlite-routes" / "registry.db")) if "sqlite" in engines else None
        if registry is not None:
            try:
                result["routing"] = routing_figures(registry.zones([ZONE]), opts.names, opts.lookups)
            finally:
                registry.close()
    result["load_average_after"] = Path("/proc/loadavg").read_text().split()[:3]
    print(report(result, engines))
    print(json.dumps(result))


def report(result: dict, engines: list[str]) -> str:
    lines = [f"{result['names']:,} routed hostnames; load average {' '.join(result['load_average_before'])} before, "
             f"{' '.join(result['load_average_after'])} after"]
    for engine in engines:
        figures = result[engine]
        routes, empty = figures["edge_routes"], figures["edge_empty"]
        lines.append(
            f"{engine}: fill {figures['fill_s']} s; Registry.open {figures['open_s']} s + first snapshot {figures['snapshot_s']} s "
            f"= {figures['load_s']} s (median of runs); edge listening after {routes['start_s']} s "
            f"(no routes: {empty['start_s']} s, ×{figures['start_ratio']}); RSS {routes['rss_mib']} MiB "
            f"(no routes: {empty['rss_mib']} MiB, ×{figures['rss_ratio']}, {figures['kib_per_route']} KiB per route)")
    if routing := result.get("routing"):
        lines.append(f"routing lookups/s over {routing['lookups_per_pass']:,} Host values each (normalize_host + Router.tunnel_for):")
        for key in ("hits", "misses", "cached", "hits_1000_routes", "uncached", "uncached_1000_routes", "reference_dict"):
            lines.append(f"  {key:<22} {routing[key + '_per_s']:>12,}/s")
        lines.append(f"  hits / dict reference {routing['hits_vs_dict']}; uncached 100k / 1k routes {routing['uncached_100k_vs_1k_routes']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
