"""Registry scale: 1,000 tunnels (each with a hostname), then the real `burrow tunnel list`.

Creates a temporary edge home (loopback only), fills its registry directly
(one transaction per tunnel and per route, as the API would), starts
`burrow-edge serve`, logs in, and times `burrow tunnel list` (table and JSON)
a few times. Prints the figures, then the same as JSON on the last line.

    .venv/bin/python bench/registry_bench.py [--tunnels 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.registry.store import Registry  # noqa: E402
from shared.crypto import mint_secret  # noqa: E402

BIN = Path(sys.executable).parent
ZONE = "example.test"


def run(*args: object, env: dict) -> str:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, env=env).stdout


def timed(args: list, env: dict, runs: int) -> tuple[float, list[float], str]:
    times, out = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        out = run(*args, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tunnels", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="burrow-registry-bench-") as tmp:
        tmp_path = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BURROW")}
        env["BURROW_HOME"] = str(tmp_path / "connector")
        home = tmp_path / "edge"
        run(BIN / "burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca",
            "--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0", env=env)

        registry = Registry.open(home / "registry.db")
        account, token = registry.create_account("bench")
        started = time.perf_counter()
        for i in range(opts.tunnels):
            tunnel = registry.create_tunnel(account.id, f"tunnel-{i:04d}", mint_secret())
            registry.route_dns(account.id, tunnel.id, f"host-{i:04d}.{ZONE}", [ZONE])
        fill_s = time.perf_counter() - started
        registry.close()

        edge = subprocess.Popen([BIN / "burrow-edge", "serve", "--home", home], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not (home / "listen.json").exists():
                if time.monotonic() > deadline or edge.poll() is not None:
                    raise SystemExit("the edge did not start")
                time.sleep(0.05)
            https = json.loads((home / "listen.json").read_text())["https"]
            run(BIN / "burrow", "tunnel", "login", f"https://{https}", "--token", token, "--ca-file", home / "ca.pem", env=env)
            table_s, table_runs, out = timed([BIN / "burrow", "tunnel", "list"], env, opts.runs)
            assert len(out.splitlines()) == opts.tunnels + 1, "unexpected list length"
            json_s, json_runs, _ = timed([BIN / "burrow", "tunnel", "list", "-o", "json"], env, opts.runs)
            help_s, _, _ = timed([BIN / "burrow", "--help"], env, opts.runs)  # CLI start-up alone
        finally:
            edge.terminate()
            edge.wait(timeout=15)

    result = {
        "tunnels": opts.tunnels,
        "fill_s": round(fill_s, 2),
        "list_table_median_s": round(table_s, 3),
        "list_json_median_s": round(json_s, 3),
        "cli_startup_median_s": round(help_s, 3),
        "runs": opts.runs,
    }
    print(f"registry fill: {opts.tunnels} tunnels + routes in {fill_s:.2f} s (direct, synchronous=FULL)")
    print(f"burrow tunnel list          median {table_s:.3f} s  runs {[round(t, 3) for t in table_runs]}")
    print(f"burrow tunnel list -o json  median {json_s:.3f} s  runs {[round(t, 3) for t in json_runs]}")
    print(f"burrow --help (start-up)    median {help_s:.3f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
