"""Issue 15, every core: `burrow-edge serve --workers 2` serves one tunnel's hostname from both
workers (the kernel spreads connections with SO_REUSEPORT; the tunnel's one session lives in
one worker, so the other forwards), `/metrics` adds both up, and SIGTERM drains both with
every request in flight answered."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from dnslib import QTYPE, DNSRecord

from tests.e2e.conftest import BIN, ZONE, start_edge, start_origin
from tests.e2e.test_metrics import metrics_port, scrape

HOST = f"app.{ZONE}"
REQUESTS = 40  # one curl (one connection, a new source port) each
IN_FLIGHT = 16  # slow requests under way when SIGTERM arrives
SLOW = "/?delay=2"


def curl_args(edge, path: str) -> list[str]:
    return [
        "curl", "-sS", "--http1.1", "--max-time", "30", "--cacert", str(edge.ca), "-o", "/dev/null", "-w", "%{http_code}",
        "--resolve", f"{HOST}:{edge.https_port}:127.0.0.1", f"https://{HOST}:{edge.https_port}{path}",
    ]


def test_two_workers_serve_forward_aggregate_and_drain(tmp_path):
    edge = start_edge(tmp_path, serve_args=("--workers", "2", "--metrics", "127.0.0.1:0", "--grace-period", "15"))
    try:
        metrics = metrics_port(edge.proc)
        env = edge.login("workers")
        edge.cli("burrow", "tunnel", "create", "spread", env=env)
        edge.cli("burrow", "tunnel", "route", "dns", "spread", HOST, env=env)
        origin, port = start_origin(tmp_path, env)
        edge.procs.append(origin)
        connector = edge.start(
            ["burrow", "tunnel", "run", "--ha-connections", "1", "--url", f"http://127.0.0.1:{port}", "spread"], "connector", env
        )
        connector.wait_for_log(r"tunnel\.registered index=")
        time.sleep(0.5)  # the holding worker's report reaches the other through the supervisor

        statuses = [subprocess.run(curl_args(edge, "/"), capture_output=True, text=True, timeout=60).stdout for _ in range(REQUESTS)]
        assert statuses == ["200"] * REQUESTS

        seen = scrape(metrics)
        answered = {worker: seen[("burrow_edge_worker_requests_total", (("worker", worker),))] for worker in ("0", "1")}
        assert answered["0"] > 0 and answered["1"] > 0, f"the requests did not spread over both workers: {answered}"
        assert answered["0"] + answered["1"] == sum(value for (name, _), value in seen.items() if name == "burrow_edge_requests_total")
        assert seen[("burrow_edge_requests_total", (("host", HOST), ("status_class", "2xx")))] == REQUESTS
        assert 0 < seen[("burrow_edge_forwarded_requests_total", ())] < REQUESTS  # the worker without the session forwarded
        tunnel_sessions = [value for (name, _), value in seen.items() if name == "burrow_edge_sessions"]
        assert tunnel_sessions == [1]

        reply = DNSRecord.parse(DNSRecord.question(HOST, "A").send("127.0.0.1", edge.dns_port, timeout=5))
        assert [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A] == ["127.0.0.1"]  # one DNS answer set

        slow = [subprocess.Popen(curl_args(edge, SLOW), stdout=subprocess.PIPE, text=True) for _ in range(IN_FLIGHT)]
        time.sleep(1.0)  # every slow request is at the origin (it answers after 2 s)
        edge.proc.popen.send_signal(signal.SIGTERM)
        assert [proc.communicate(timeout=60)[0] for proc in slow] == ["200"] * IN_FLIGHT
        assert edge.proc.popen.wait(timeout=30) == 0
        log = edge.proc.log()
        assert log.count("edge.drained timed_out=False requests_cut=0") == 2, log[-4000:]
    finally:
        for proc in reversed(edge.procs):
            proc.stop()


def test_a_connectors_sessions_are_spread_over_the_workers(tmp_path):
    """Two HA sessions: a worker that holds one refuses the other (retryable) while the other
    worker holds none, so the connector reconnects until each worker has one: nothing is forwarded."""
    edge = start_edge(tmp_path, serve_args=("--workers", "2", "--metrics", "127.0.0.1:0"))
    try:
        metrics = metrics_port(edge.proc)
        env = edge.login("spreader")
        edge.cli("burrow", "tunnel", "create", "spread", env=env)
        edge.cli("burrow", "tunnel", "route", "dns", "spread", HOST, env=env)
        origin, port = start_origin(tmp_path, env)
        edge.procs.append(origin)
        connector = edge.start(
            ["burrow", "tunnel", "run", "--ha-connections", "2", "--url", f"http://127.0.0.1:{port}", "spread"], "connector", env
        )
        connector.wait_for_log(r"tunnel\.registered index=", count=2, timeout=60)
        time.sleep(0.5)
        statuses = [subprocess.run(curl_args(edge, "/"), capture_output=True, text=True, timeout=60).stdout for _ in range(20)]
        assert statuses == ["200"] * 20
        seen = scrape(metrics)
        assert seen[("burrow_edge_forwarded_requests_total", ())] == 0
        assert all(seen[("burrow_edge_worker_requests_total", (("worker", worker),))] > 0 for worker in ("0", "1"))
    finally:
        for proc in reversed(edge.procs):
            proc.stop()

def test_a_worker_killed_is_started_again_on_the_same_sockets(tmp_path):
    edge = start_edge(tmp_path, serve_args=("--workers", "2", "--metrics", "127.0.0.1:0"))
    try:
        metrics = metrics_port(edge.proc)
        workers = subprocess.run(["pgrep", "-P", str(edge.proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2
        os.kill(int(workers[1]), signal.SIGKILL)
        edge.proc.wait_for_log(r"edge\.worker_died worker=\d code=-9")
        edge.proc.wait_for_log(r"edge\.server edge\.listening", count=3)
        statuses = [
            subprocess.run(["curl", "-sS", "--cacert", str(edge.ca), "-o", "/dev/null", "-w", "%{http_code}", f"{edge.url}/"],
                           capture_output=True, text=True, timeout=60).stdout
            for _ in range(REQUESTS)
        ]
        assert "000" not in statuses, statuses  # every connection answered, whichever worker took it
        seen = scrape(metrics)
        assert all(seen[("burrow_edge_worker_requests_total", (("worker", worker),))] > 0 for worker in ("0", "1"))
    finally:
        for proc in reversed(edge.procs):
            proc.stop()


def test_a_worker_that_cannot_start_is_one_clear_error(tmp_path):
    home = tmp_path / "edge"
    listen = ["--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0"]
    subprocess.run([BIN / "burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca", *listen], check=True, capture_output=True)
    for cert in (home / "certs").iterdir():
        cert.unlink()
    done = subprocess.run([BIN / "burrow-edge", "serve", "--home", home, "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "no usable certificate" in done.stderr and "exited with code" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (home / "listen.json").exists()


def test_features_held_in_one_workers_memory_are_refused_with_workers(tmp_path):
    """Quick tunnels, public ports and a PostgreSQL registry with `--workers 2`: one line, no start."""
    home = tmp_path / "edge"
    listen = ["--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0"]
    init = [BIN / "burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca", *listen]
    subprocess.run([*init, "--tcp-ports", "40000-40009"], check=True, capture_output=True)
    done = subprocess.run(
        [BIN / "burrow-edge", "serve", "--home", home, "--workers", "2", "--quick-tunnels"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "--workers above 1 does not support --quick-tunnels, public ports" in done.stderr
    assert not (home / "listen.json").exists()
