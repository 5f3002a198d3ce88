"""Egress-proxy benchmark: the tunnel with its connector behind tinyproxy vs. the same connector direct.

Starts, in a temporary directory and on loopback only, a `burrow-edge`, an origin
(tests/e2e/origin.py) and tinyproxy (HTTP CONNECT with BasicAuth, tests/e2e/proxies.py), then,
for --rounds rounds, runs the tunnel's connector (4 connections) twice in turn (which one
first alternates), once dialling the edge directly and once with
`--proxy http://USER:PASSWORD@127.0.0.1:PORT`, and measures through the edge's HTTPS port each time:

* request rate: --requests small keep-alive GETs over --connections connections (bench/loadgen.py);
* download MB/s: one curl download of --mb MiB.

The figure is the proxied median as a ratio of the direct median measured in the same run.
Every load is bounded by its request count and --time-cap. Prints a table, then the same
figures as JSON on the last line.

    .venv/bin/python bench/proxy_bench.py [--rounds 3] [--requests 3000] [--connections 20] [--mb 100]
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import tempfile
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from loadgen import Target, run_load  # noqa: E402

from tests.e2e import proxies  # noqa: E402 - the suite's tinyproxy config
from tests.e2e.conftest import ZONE, Proc, free_port, start_edge, start_origin, wait_until  # noqa: E402

HOST = f"app.{ZONE}"
MB = 1_000_000
PROXY_VARIABLES = {"https_proxy", "all_proxy", "no_proxy", "http_proxy"}


def start_tinyproxy(tmp: Path, env: dict) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(proxies.tinyproxy_argv(tmp, "127.0.0.1", port), tmp / "tinyproxy.log", env)
    wait_until(lambda: "Reloading config file finished" in proc.log() or not proc.alive(), 20, "tinyproxy")
    if not proc.alive():
        raise SystemExit(f"tinyproxy did not start:\n{proc.log()}")
    return proc, f"http://{proxies.PROXY_USER}:{proxies.PROXY_PASSWORD}@127.0.0.1:{port}"


def request_rate(edge, requests: int, connections: int, time_cap: float) -> float:
    context = ssl.create_default_context(cafile=str(edge.ca))
    context.set_alpn_protocols(["http/1.1"])
    target = Target("127.0.0.1", edge.https_port, "/", HOST, context)
    result = trio.run(lambda: run_load(target, requests=requests, connections=connections, time_cap=time_cap))
    if result.errors or result.completed < requests:
        raise SystemExit(f"load run: {result.completed} of {requests} requests answered 200, {result.errors} errors")
    return result.completed / result.elapsed


def download_mbps(edge, mb: int, time_cap: float) -> float:
    out = edge.curl(HOST, f"/download?mb={mb}", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download}",
                    timeout=time_cap)
    status, size, speed = out.stdout.decode().split()
    if status != "200" or int(size) != mb << 20:
        raise SystemExit(f"download: status {status}, {size} bytes of {mb << 20}: {out.stderr.decode()}")
    return float(speed) / MB


def measure(edge, env: dict, origin_port: int, name: str, extra: list[str], args) -> tuple[float, float]:
    connector = edge.start(["burrow", "tunnel", "run", *extra, "--url", f"http://127.0.0.1:{origin_port}", "bench-tunnel"],
                           name, env)
    try:
        connector.wait_for_log(r"tunnel\.registered index=", count=4)
        return request_rate(edge, args.requests, args.connections, args.time_cap), download_mbps(edge, args.mb, args.time_cap)
    finally:
        connector.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000, help="GETs per request-rate run")
    parser.add_argument("--connections", type=int, default=20, help="keep-alive client connections")
    parser.add_argument("--mb", type=int, default=100, help="MiB per download")
    parser.add_argument("--time-cap", type=float, default=60.0, help="seconds per load run at most")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="burrow-proxy-bench-") as name:
        tmp = Path(name)
        edge = start_edge(tmp)
        try:
            env = {key: value for key, value in edge.connector_env("bench").items() if key.lower() not in PROXY_VARIABLES}
            token = edge.cli("burrow-edge", "account", "create", "bench", "--home", edge.home).stdout.splitlines()[-1]
            edge.cli("burrow", "tunnel", "login", edge.url, "--token", token, "--ca-file", edge.ca, env=env)
            edge.cli("burrow", "tunnel", "create", "bench-tunnel", env=env)
            edge.cli("burrow", "tunnel", "route", "dns", "bench-tunnel", HOST, env=env)
            origin, origin_port = start_origin(tmp, env)
            edge.procs.append(origin)
            tiny, proxy_url = start_tinyproxy(tmp, env)
            edge.procs.append(tiny)
            figures: dict[str, list[tuple[float, float]]] = {"direct": [], "proxy": []}
            runs = {"direct": [], "proxy": ["--proxy", proxy_url]}
            for round_ in range(args.rounds):
                for kind in sorted(runs, reverse=round_ % 2 == 1):  # alternate which goes first
                    figures[kind].append(measure(edge, env, origin_port, f"{kind}-{round_}", runs[kind], args))
                print(f"round {round_ + 1}: direct {figures['direct'][-1]}, proxy {figures['proxy'][-1]}", file=sys.stderr)
            if "CONNECT 127.0.0.1" not in tiny.log():
                raise SystemExit("tinyproxy saw no CONNECT: the proxied runs did not go through it")
        finally:
            for proc in reversed(edge.procs):
                proc.stop()

    report = {}
    for index, (metric, unit) in enumerate((("request rate", "req/s"), ("download", "MB/s"))):
        direct = statistics.median(values[index] for values in figures["direct"])
        proxied = statistics.median(values[index] for values in figures["proxy"])
        report[metric] = {"unit": unit, "direct": round(direct, 1), "proxy": round(proxied, 1), "ratio": round(proxied / direct, 3)}
    print(f"{'metric':<14} {'unit':<6} {'direct':>10} {'via tinyproxy':>14} {'ratio':>7}")
    for metric, row in report.items():
        print(f"{metric:<14} {row['unit']:<6} {row['direct']:>10} {row['proxy']:>14} {row['ratio']:>7}")
    print(json.dumps({"rounds": args.rounds, "requests": args.requests, "connections": args.connections, "mb": args.mb,
                      "figures": report}))


if __name__ == "__main__":
    main()
