"""High availability: drains, dead-session detection, reconnects, replicas (real CLIs).

The first test runs on loopback. The rest build a home network behind NAT with
network namespaces (`tests/e2e/netns.py`) and break it in bounded ways while
curl keeps asking; every figure they measure goes to the test log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import netns
from tests.e2e.conftest import (
    BIN,
    REPO,
    START_TIMEOUT,
    ZONE,
    Proc,
    start_edge,
    start_origin,
    wait_until,
)
from tests.e2e.tunnels import edge_with_origin_tunnel

HOST = f"app.{ZONE}"
HEARTBEAT = ["--heartbeat-interval", "1s", "--heartbeat-timeout", "2s"]  # dead after ≤ 3 s
DETECT_LIMIT = 3.0 + 1.5  # interval + timeout, plus scheduling slack
HTTPS_PORT, TUNNEL_PORT, DNS_PORT = 8443, 7844, 5353


def _figure(name: str, value) -> None:
    print(f"HA-FIGURE {name}={value}", file=sys.stderr)


# Loopback: the edge drains on SIGTERM -------------------------------------------


def test_edge_sigterm_lets_in_flight_requests_finish(tmp_path):
    with edge_with_origin_tunnel(tmp_path, HOST) as (edge, connector):
        assert edge.curl(HOST, "/").returncode == 0

        slow: dict = {}
        thread = threading.Thread(target=lambda: slow.update(result=edge.curl(HOST, "/?delay=2", "-w", "\n%{http_code}", timeout=20)))
        thread.start()
        time.sleep(0.7)  # the slow request is at the origin now (it answers after 2 s)
        edge.proc.popen.send_signal(signal.SIGTERM)
        edge.proc.wait_for_log(r"edge\.draining", timeout=5)
        assert edge.curl(HOST, "/", timeout=5).returncode != 0, "a new connection was accepted while draining"
        thread.join(timeout=25)
        assert slow["result"].returncode == 0, slow["result"].stderr
        assert slow["result"].stdout.decode().rsplit("\n", 1)[1] == "200"
        assert edge.proc.popen.wait(timeout=15) == 0
        assert "edge.drained timed_out=False requests_cut=0" in edge.proc.log()
        connector.wait_for_log(r"tunnel\.retrying", timeout=10)  # it noticed and keeps trying


# Network namespaces: home behind NAT, edge on a VPS -------------------------------


@dataclass
class Lab:
    topo: netns.Topology
    tmp: Path
    env: dict
    home_env: dict
    edge_home: Path
    edge: Proc
    connector: Proc
    origin_port: int
    config: Path
    procs: list

    def start_edge(self, name: str = "edge") -> Proc:
        (self.edge_home / "listen.json").unlink(missing_ok=True)
        proc = Proc(
            self.topo.exec(self.topo.vps, str(BIN / "burrow-edge"), "serve", "--home", str(self.edge_home),
                           "--grace-period", "10", *HEARTBEAT),
            self.tmp / f"{name}.log", self.env,
        )
        self.procs.append(proc)
        wait_until(lambda: (self.edge_home / "listen.json").exists() or not proc.alive(), START_TIMEOUT, "the edge")
        assert proc.alive(), proc.log()
        self.edge = proc
        return proc

    def start_connector(self, name: str) -> Proc:
        proc = Proc(
            self.topo.exec(self.topo.home, str(BIN / "burrow"), "tunnel", "run", "--config", str(self.config),
                           "--grace-period", "10", *HEARTBEAT, "ha-tunnel"),
            self.tmp / f"{name}.log", self.home_env,
        )
        self.procs.append(proc)
        return proc

    def home_cli(self, *args: str) -> str:
        result = subprocess.run(self.topo.exec(self.topo.home, str(BIN / args[0]), *args[1:]),
                                capture_output=True, text=True, env=self.home_env, timeout=60)
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
        return result.stdout

    def connectors(self) -> dict[str, list[int]]:
        info = json.loads(self.home_cli("burrow", "tunnel", "info", "ha-tunnel", "-o", "json"))
        return {group["connector_id"]: group["connections"] for group in info["connectors"]}

    def live(self) -> int:
        return sum(len(conns) for conns in self.connectors().values())

    def curl_args(self) -> list[str]:
        return ["--http1.1", "--cacert", str(self.edge_home / "ca.pem"), "--resolve", f"{HOST}:{HTTPS_PORT}:{netns.VPS_IP}"]

    def url(self, path: str = "/") -> str:
        return f"https://{HOST}:{HTTPS_PORT}{path}"

    def curl(self, path: str = "/", max_time: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.topo.exec(self.topo.vps, "curl", "-sS", "-w", "\n%{http_code}", "--max-time", str(max_time),
                           *self.curl_args(), self.url(path)),
            capture_output=True, text=True, timeout=max_time + 10,
        )

    def load(self, **kwargs) -> netns.Load:
        return netns.Load(self.topo.exec(self.topo.vps), self.curl_args(), self.url(), **kwargs)


def _count(proc: Proc, pattern: str) -> int:
    return len(re.findall(pattern, proc.log()))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = netns.netns_permitted()
    if reason is not None:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("ha")
    topo = netns.Topology(f"bw{os.getpid() % 100000}")
    procs: list[Proc] = []
    try:
        topo.create()
        env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
        env["BURROW_HOME"] = str(tmp / "nobody")
        edge_home = tmp / "edge"
        subprocess.run(
            [BIN / "burrow-edge", "init", "--home", edge_home, "--zone", ZONE, "--public-ip", netns.VPS_IP, "--dev-ca",
             "--https-listen", f"{netns.VPS_IP}:{HTTPS_PORT}", "--tunnel-listen", f"{netns.VPS_IP}:{TUNNEL_PORT}",
             "--dns-listen", f"{netns.VPS_IP}:{DNS_PORT}"],
            check=True, capture_output=True, env=env,
        )
        token = subprocess.run([BIN / "burrow-edge", "account", "create", "ha", "--home", edge_home],
                               check=True, capture_output=True, text=True, env=env).stdout.splitlines()[-1]
        (tmp / "home").mkdir()
        home_env = {**env, "BURROW_HOME": str(tmp / "home")}
        lab = Lab(topo, tmp, env, home_env, edge_home, None, None, 0, tmp / "home" / "config.yml", procs)
        lab.start_edge()
        lab.home_cli("burrow", "tunnel", "login", f"https://{netns.VPS_IP}:{HTTPS_PORT}", "--token", token,
                     "--ca-file", str(edge_home / "ca.pem"))
        lab.home_cli("burrow", "tunnel", "create", "ha-tunnel")
        lab.home_cli("burrow", "tunnel", "route", "dns", "ha-tunnel", HOST)
        port_file = tmp / "origin.port"
        origin = Proc(topo.exec(topo.home, sys.executable, "-m", "tests.e2e.origin", str(port_file)),
                      tmp / "origin.log", env, cwd=REPO)
        procs.append(origin)
        wait_until(port_file.exists, START_TIMEOUT, "the origin")
        lab.origin_port = int(port_file.read_text())
        lab.config.write_text(
            f"tunnel: ha-tunnel\ningress:\n  - hostname: {HOST}\n    service: http://127.0.0.1:{lab.origin_port}\n"
            f"  - service: http_status:404\n"
        )
        lab.connector = lab.start_connector("connector-a")
        lab.connector.wait_for_log(r"tunnel\.registered index=", count=4)
        yield lab
    finally:
        for proc in reversed(procs):
            proc.stop()
        topo.destroy()


def _wait_live(lab: Lab, count: int, timeout: float = 15) -> None:
    wait_until(lambda: lab.live() == count, timeout, f"{count} live tunnel connections")


def test_requests_cross_the_nat(lab):
    result = lab.curl("/")
    assert result.stdout.rsplit("\n", 1)[1] == "200", result.stderr
    assert f"peer={netns.ROUTER_WAN_IP}:" in lab.edge.log()  # the edge sees only the NAT's address
    no_route = lab.topo.run(lab.topo.vps, "ip", "route", "get", netns.HOME_IP, check=False)
    assert no_route.returncode != 0, "the VPS can route into the home network"


def test_killed_session_is_replaced_and_no_new_request_fails(lab):
    _wait_live(lab, 4)
    registered = _count(lab.connector, r"tunnel\.registered index=")
    with lab.load(workers=4, duration=15, max_time=10) as load:
        wait_until(lambda: load.count() >= 20, 10, "load to start")
        port = lab.topo.tunnel_ports(TUNNEL_PORT)[0]
        lab.topo.kill_socket(port, TUNNEL_PORT)
        killed_at = time.monotonic()
        wait_until(lambda: _count(lab.connector, r"tunnel\.registered index=") > registered, 5, "the session replaced")
        replaced = time.monotonic() - killed_at
        time.sleep(1.0)
        results = load.stop()
    failed = [r for r in results if r.status != 200]
    late = [r for r in failed if r.started > killed_at]
    _figure("a.requests", len(results))
    _figure("a.failed_in_flight", len(failed))
    _figure("a.replaced_seconds", round(replaced, 2))
    assert not late, f"requests started after the kill failed: {late}"
    assert all(r.status == 502 for r in failed), failed
    assert replaced < 5
    _wait_live(lab, 4)


def test_blackholed_uplink_is_detected_and_reconnects(lab):
    _wait_live(lab, 4)
    registered = _count(lab.connector, r"tunnel\.registered index=")
    retrying = _count(lab.connector, r"tunnel\.retrying")
    lost = _count(lab.edge, r"session\.lost")
    with lab.load(workers=3, duration=30, max_time=8) as load:
        wait_until(lambda: load.count() >= 10, 10, "load to start")
        lab.topo.blackhole(True)
        cut_at = time.monotonic()
        try:
            wait_until(lambda: _count(lab.connector, r"tunnel\.retrying") >= retrying + 4, 10, "the connector to notice")
            connector_detect = time.monotonic() - cut_at
            wait_until(lambda: _count(lab.edge, r"session\.lost") >= lost + 4, 10, "the edge to notice")
            edge_detect = time.monotonic() - cut_at
            time.sleep(max(0.0, 6.0 - (time.monotonic() - cut_at)))  # outage of 6 s > interval + timeout
        finally:
            lab.topo.blackhole(False)
        back_at = time.monotonic()
        wait_until(lambda: _count(lab.connector, r"tunnel\.registered index=") >= registered + 4, 30, "reconnection")
        reconnect = time.monotonic() - back_at
        time.sleep(1.0)
        results = load.stop()
    _figure("b.connector_detect_seconds", round(connector_detect, 2))
    _figure("b.edge_detect_seconds", round(edge_detect, 2))
    _figure("b.reconnect_after_link_back_seconds", round(reconnect, 2))
    codes = sorted({r.status for r in results})
    _figure("b.requests", len(results))
    _figure("b.status_codes", codes)
    _figure("b.non_200", sum(r.status != 200 for r in results))
    _figure("b.longest_request_seconds", round(max(r.ended - r.started for r in results), 2))
    assert connector_detect < DETECT_LIMIT and edge_detect < DETECT_LIMIT
    assert all(r.curl_exit != 28 for r in results), "a request hung until curl's --max-time"
    assert set(codes) <= {200, 502}, codes
    after = [r for r in results if r.started > back_at + reconnect]
    assert after and all(r.status == 200 for r in after)
    assert reconnect < 15


def test_edge_restart_connectors_come_back(lab):
    _wait_live(lab, 4)
    registered = _count(lab.connector, r"tunnel\.registered index=")
    lab.edge.popen.send_signal(signal.SIGKILL)
    lab.edge.popen.wait()
    time.sleep(1.0)
    lab.start_edge("edge-restarted")
    back_at = time.monotonic()
    wait_until(lambda: _count(lab.connector, r"tunnel\.registered index=") >= registered + 4, 10, "the connector back")
    reconnect = time.monotonic() - back_at
    _figure("c.reconnect_after_edge_back_seconds", round(reconnect, 2))
    _wait_live(lab, 4)  # registry intact, no stale rows counted as live
    info = json.loads(lab.home_cli("burrow", "tunnel", "info", "ha-tunnel", "-o", "json"))
    assert HOST in info["hostnames"] and info["stale"] == 0
    result = lab.curl("/")
    assert result.stdout.rsplit("\n", 1)[1] == "200", result.stderr


def test_sigterm_one_replica_loses_nothing(lab):
    _wait_live(lab, 4)
    first = set(lab.connectors())
    replica = lab.start_connector("connector-b")
    replica.wait_for_log(r"tunnel\.registered index=", count=4)
    _wait_live(lab, 8)
    slow: list = []
    slow_threads = [threading.Thread(target=lambda: slow.append(lab.curl("/?delay=3", max_time=20))) for _ in range(4)]
    with lab.load(workers=4, duration=20, max_time=10) as load:
        wait_until(lambda: load.count() >= 20, 10, "load to start")
        for thread in slow_threads:
            thread.start()
        time.sleep(0.5)  # the slow requests are at the origin now
        lab.connector.popen.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert lab.connector.popen.wait(timeout=15) == 0
        drained = time.monotonic() - stopped_at
        exited_at = time.monotonic()
        time.sleep(2.0)
        results = load.stop()
    for thread in slow_threads:
        thread.join(timeout=25)
    _figure("d.requests", len(results))
    _figure("d.failed", sum(r.status != 200 for r in results))
    _figure("d.connector_drain_seconds", round(drained, 2))
    assert all(r.stdout.rsplit("\n", 1)[1] == "200" for r in slow), [r.stderr for r in slow]
    assert len(slow) == 4
    assert all(r.status == 200 for r in results), [r for r in results if r.status != 200]
    assert any(r.started > exited_at for r in results)
    remaining = lab.connectors()
    assert len(remaining) == 1 and not (set(remaining) & first) and len(next(iter(remaining.values()))) == 4
    lab.connector = replica


# Chaos: a fault proxy between connector and edge ---------------------------------

CHAOS_SECONDS = 30  # bounded: faults stop after this, the test after about 50 s
CHAOS_SEED = 6
RESTARTS = (("kill", 8.0), ("term", 18.0))  # connector restarts, seconds into the chaos
FD_SLACK = 8  # file descriptors above the baseline once the chaos is over and sessions are back
RSS_SLACK_MIB = 40  # generous: the allocator keeps freed arenas


def _resources(pid: int) -> tuple[int, float]:
    """Open file descriptors and resident memory (MiB) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    return len(os.listdir(f"/proc/{pid}/fd")), int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def test_chaos_every_request_completes_or_fails_cleanly(tmp_path):
    edge = start_edge(tmp_path, serve_args=(*HEARTBEAT, "--grace-period", "5"))
    try:
        env = edge.login("chaos")
        edge.cli("burrow", "tunnel", "create", "chaos-tunnel", env=env)
        edge.cli("burrow", "tunnel", "route", "dns", "chaos-tunnel", HOST, env=env)
        receipts = tmp_path / "receipts.log"
        origin, port = start_origin(tmp_path, {**env, "ORIGIN_RECEIPTS": str(receipts)})
        edge.procs.append(origin)
        port_file = tmp_path / "faultproxy.port"
        proxy = Proc(
            [sys.executable, "-m", "tests.e2e.faultproxy", str(port_file), str(edge.tunnel_port), str(CHAOS_SEED), str(CHAOS_SECONDS)],
            tmp_path / "faultproxy.log", env, cwd=REPO,
        )
        edge.procs.append(proxy)
        wait_until(port_file.exists, START_TIMEOUT, "the fault proxy")
        creds_path = Path(env["BURROW_HOME"]) / "chaos-tunnel" / "credentials.json"
        creds = json.loads(creds_path.read_text())
        creds["Endpoint"] = f"127.0.0.1:{port_file.read_text()}"
        creds_path.write_text(json.dumps(creds))
        run = ["burrow", "tunnel", "run", "--url", f"http://127.0.0.1:{port}", *HEARTBEAT, "--grace-period", "3", "chaos-tunnel"]
        connector = edge.start(run, "connector-0", env)
        connector.wait_for_log(r"tunnel\.registered index=", count=4)
        curl_args = ["--http1.1", "--cacert", str(edge.ca), "--resolve", f"{HOST}:{edge.https_port}:127.0.0.1"]
        for _ in range(20):  # warm up before the baseline: first requests allocate caches
            assert edge.curl(HOST, "/", "-o", "/dev/null", timeout=10).returncode == 0
        baseline = _resources(edge.proc.pid)
        url = f"https://{HOST}:{edge.https_port}/"
        posts = netns.Load([], [*curl_args, "--data", "once"], url, workers=1, duration=CHAOS_SECONDS + 2, max_time=10, max_requests=1000)
        with posts, netns.Load([], curl_args, url, workers=3, duration=CHAOS_SECONDS + 2, max_time=10, max_requests=3000) as load:
            chaos_start = time.monotonic()
            for number, (how, at) in enumerate(RESTARTS, start=1):
                time.sleep(max(0.0, chaos_start + at - time.monotonic()))
                connector.popen.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
                connector.popen.wait(timeout=15)
                connector = edge.start(run, f"connector-{number}", env)
                connector.wait_for_log(r"tunnel\.registered index=", timeout=30)  # a loaded machine starts it slowly
            proxy.wait_for_log(r"chaos\.over", timeout=CHAOS_SECONDS + 10)
            results = load.stop() + posts.stop()
        seen = receipts.read_text().split()[1::2]  # request ids, one per arrival at the origin
        _figure("chaos.origin_receipts", {"requests": len(seen), "posts": receipts.read_text().count("POST ")})
        assert len(seen) == len(set(seen)), "the origin saw a request twice"
        assert receipts.read_text().count("POST ") <= len(posts.results)
        faults = re.findall(r"fault kind=(\w+)", proxy.log())
        codes: dict = {}
        for r in results:
            codes[(r.status, r.curl_exit)] = codes.get((r.status, r.curl_exit), 0) + 1
        _figure("chaos.faults", {kind: faults.count(kind) for kind in set(faults)})
        _figure("chaos.connector_restarts", len(RESTARTS))
        _figure("chaos.requests", len(results))
        _figure("chaos.status_curl_exit", codes)
        _figure("chaos.success_rate", round(sum(r.status == 200 for r in results) / len(results), 3))
        _figure("chaos.longest_request_seconds", round(max(r.ended - r.started for r in results), 2))
        assert len(faults) >= 5 and results
        assert all(r.curl_exit != 28 for r in results), "a request hung until curl's --max-time"
        # a complete response, a clean 5xx, or a cut the client can see (curl 18/56: never passed off as complete)
        assert all(r.status in (200, 502, 503, 504) or r.curl_exit in (18, 56) for r in results), codes
        assert sum(r.status == 200 for r in results) > 0  # (the share depends on how fast connectors restart here)
        wait_until(lambda: edge.curl(HOST, "/", "-w", "%{http_code}", "-o", "/dev/null", timeout=5).stdout == b"200",
                   15, "the tunnel to serve again after the chaos")
        connector.wait_for_log(r"tunnel\.registered index=", count=4, timeout=15)

        def settled() -> tuple[int, float] | None:
            now = _resources(edge.proc.pid)
            return now if now[0] <= baseline[0] + FD_SLACK else None

        after = wait_until(settled, 20, f"the edge's descriptors back near {baseline[0]}")
        _figure("chaos.edge_fds_before_after", (baseline[0], after[0]))
        _figure("chaos.edge_rss_mib_before_after", (round(baseline[1], 1), round(after[1], 1)))
        assert after[1] <= baseline[1] + RSS_SLACK_MIB, (baseline, after)
    finally:
        for proc in reversed(edge.procs):
            proc.stop()
