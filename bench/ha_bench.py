"""High-availability benchmark: how fast connectors come back, how many requests survive chaos.

Starts, in a temporary directory and on loopback only, a `burrow-edge`, an origin
(tests/e2e/origin.py) and a `burrow` connector with 4 HA connections, then measures:

* reconnect time after an edge restart: `kill -9` the edge, start it again, and time
  from the moment it listens until the connector has all its sessions back; median
  of --rounds. Reference, measured in the same run: the connector's cold start (from
  its launch to all sessions registered), so the ratio says how much the backoff costs.
* request success rate during a chaos run: --workers curls in a loop for
  --chaos-seconds while the test suite's fault proxy (tests/e2e/faultproxy.py) between
  connector and edge resets sessions, stalls them and adds 200 ms latency spikes.
  Reference: the same load for the same time with the proxy only forwarding.

Every wait is bounded. Prints a table, then the same figures as JSON on the last line.

    .venv/bin/python bench/ha_bench.py [--rounds 3] [--chaos-seconds 30] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e import netns  # noqa: E402 - the suite's process, load and fault-proxy helpers
from tests.e2e.conftest import BIN, ZONE, Proc, free_port, start_origin, wait_until  # noqa: E402

HOST = f"app.{ZONE}"
HEARTBEAT = ["--heartbeat-interval", "1s", "--heartbeat-timeout", "2s"]
SEED = 6
BACK_TIMEOUT = 60.0


class Stack:
    """Edge (fixed ports, so a restart keeps them), origin, fault proxy and connector."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
        self.env["BURROW_HOME"] = str(tmp / "nobody")
        self.home = tmp / "edge"
        self.https_port, self.tunnel_port = free_port(), free_port()
        subprocess.run(
            [BIN / "burrow-edge", "init", "--home", self.home, "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca",
             "--https-listen", f"127.0.0.1:{self.https_port}", "--tunnel-listen", f"127.0.0.1:{self.tunnel_port}",
             "--dns-listen", "127.0.0.1:0"],
            check=True, capture_output=True, env=self.env,
        )
        self.edge = self.start_edge()
        token = subprocess.run([BIN / "burrow-edge", "account", "create", "bench", "--home", self.home],
                               check=True, capture_output=True, text=True, env=self.env).stdout.splitlines()[-1]
        self.conn_env = {**self.env, "BURROW_HOME": str(tmp / "conn")}
        (tmp / "conn").mkdir()
        for args in (["tunnel", "login", f"https://127.0.0.1:{self.https_port}", "--token", token, "--ca-file", str(self.home / "ca.pem")],
                     ["tunnel", "create", "ha-bench"], ["tunnel", "route", "dns", "ha-bench", HOST]):
            subprocess.run([BIN / "burrow", *args], check=True, capture_output=True, env=self.conn_env)
        origin, self.origin_port = start_origin(tmp, self.env)
        self.procs.append(origin)

    def start_edge(self, name: str = "edge") -> Proc:
        (self.home / "listen.json").unlink(missing_ok=True)
        proc = Proc([BIN / "burrow-edge", "serve", "--home", self.home, *HEARTBEAT], self.tmp / f"{name}.log", self.env)
        self.procs.append(proc)
        wait_until(lambda: (self.home / "listen.json").exists() or not proc.alive(), BACK_TIMEOUT, "the edge")
        if not proc.alive():
            raise SystemExit(f"the edge did not start:\n{proc.log()}")
        return proc

    def point_connector_at(self, port: int) -> None:
        path = Path(self.conn_env["BURROW_HOME"]) / "ha-bench" / "credentials.json"
        creds = json.loads(path.read_text())
        creds["Endpoint"] = f"127.0.0.1:{port}"
        path.write_text(json.dumps(creds))

    def start_connector(self, name: str) -> Proc:
        proc = Proc([BIN / "burrow", "tunnel", "run", "--url", f"http://127.0.0.1:{self.origin_port}", *HEARTBEAT, "ha-bench"],
                    self.tmp / f"{name}.log", self.conn_env)
        self.procs.append(proc)
        return proc

    def load(self, seconds: float, workers: int) -> netns.Load:
        curl_args = ["--http1.1", "--cacert", str(self.home / "ca.pem"), "--resolve", f"{HOST}:{self.https_port}:127.0.0.1"]
        return netns.Load([], curl_args, f"https://{HOST}:{self.https_port}/", workers=workers,
                          duration=seconds, max_time=10, max_requests=100_000)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def registered(proc: Proc) -> int:
    return len(re.findall(r"tunnel\.registered index=", proc.log()))


def reconnects(stack: Stack, rounds: int) -> tuple[float, list[float]]:
    """Cold start of the connector, then `rounds` edge restarts (kill -9): seconds until all 4 sessions are back."""
    stack.point_connector_at(stack.tunnel_port)
    launched = time.monotonic()
    connector = stack.start_connector("connector-direct")
    wait_until(lambda: registered(connector) >= 4, BACK_TIMEOUT, "the connector's first sessions")
    cold = time.monotonic() - launched
    times = []
    for number in range(rounds):
        before = registered(connector)
        stack.edge.popen.send_signal(signal.SIGKILL)
        stack.edge.popen.wait()
        time.sleep(1.0)  # the edge is down for a moment; the connector is backing off
        stack.edge = stack.start_edge(f"edge-{number + 1}")
        back = time.monotonic()
        wait_until(lambda: registered(connector) >= before + 4, BACK_TIMEOUT, "the connector back")
        times.append(time.monotonic() - back)
    connector.stop()
    return cold, times


def success(results: list) -> dict:
    codes: dict[str, int] = {}
    for r in results:
        key = f"{r.status}/{r.curl_exit}"
        codes[key] = codes.get(key, 0) + 1
    ok = sum(r.status == 200 and r.curl_exit == 0 for r in results)
    return {"requests": len(results), "ok": ok, "rate": round(ok / max(1, len(results)), 4),
            "hung": sum(r.curl_exit == 28 for r in results), "codes": codes}


def chaos(stack: Stack, seconds: float, workers: int) -> tuple[dict, dict, dict]:
    """The same load through the fault proxy, first only forwarding, then with faults."""
    figures = []
    faults: dict[str, int] = {}
    for label, chaos_seconds in (("calm", 0.0), ("chaos", seconds)):
        port_file = stack.tmp / f"faultproxy-{label}.port"
        proxy = Proc([sys.executable, "-m", "tests.e2e.faultproxy", str(port_file), str(stack.tunnel_port), str(SEED), str(chaos_seconds)],
                     stack.tmp / f"faultproxy-{label}.log", stack.env, cwd=REPO)
        stack.procs.append(proxy)
        wait_until(port_file.exists, BACK_TIMEOUT, "the fault proxy")
        stack.point_connector_at(int(port_file.read_text()))
        connector = stack.start_connector(f"connector-{label}")
        wait_until(lambda: registered(connector) >= 4, BACK_TIMEOUT, "the connector through the proxy")
        with stack.load(seconds, workers) as load:
            time.sleep(seconds)
            results = load.stop()
        figures.append(success(results))
        if label == "chaos":
            for kind in re.findall(r"fault kind=(\w+)", proxy.log()):
                faults[kind] = faults.get(kind, 0) + 1
        connector.stop()
        proxy.stop()
    return figures[0], figures[1], faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chaos-seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    if args.rounds < 1 or args.chaos_seconds <= 0 or args.workers < 1:
        parser.error("--rounds and --workers must be ≥ 1, --chaos-seconds > 0")
    with tempfile.TemporaryDirectory(prefix="burrow-ha-bench-") as tmp:
        stack = Stack(Path(tmp))
        try:
            cold, restarts = reconnects(stack, args.rounds)
            calm, stormy, faults = chaos(stack, args.chaos_seconds, args.workers)
        finally:
            stack.stop()
    median = statistics.median(restarts)
    report = {
        "connector_cold_start_seconds": round(cold, 2),
        "reconnect_after_edge_restart_seconds": [round(t, 2) for t in restarts],
        "reconnect_median_seconds": round(median, 2),
        "reconnect_vs_cold_start": round(median / cold, 2),
        "calm": calm,
        "chaos": stormy,
        "chaos_faults": faults,
        "chaos_vs_calm_success": round(stormy["rate"] / max(calm["rate"], 1e-9), 3),
    }
    print(f"{'connector cold start':<40} {cold:8.2f} s")
    print(f"{'reconnect after edge restart (median)':<40} {median:8.2f} s   rounds: {report['reconnect_after_edge_restart_seconds']}")
    print(f"{'reconnect / cold start':<40} {report['reconnect_vs_cold_start']:8.2f}")
    print(f"{'success rate, calm':<40} {calm['rate']:8.3f}   of {calm['requests']} requests, codes {calm['codes']}")
    print(f"{'success rate, chaos':<40} {stormy['rate']:8.3f}   of {stormy['requests']} requests, codes {stormy['codes']}")
    print(f"{'hung requests (curl timeout), chaos':<40} {stormy['hung']:8d}")
    print(f"{'faults injected':<40} {faults}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
