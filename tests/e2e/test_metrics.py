"""Issue 8: /metrics, /ready and /healthcheck on both sides, scraped after a known workload."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from dnslib import RCODE, DNSRecord
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import BIN, START_TIMEOUT, ZONE, Edge, Proc, start_edge, wait_until

FORGED_RUNS = 3
HA_CONNECTIONS = 4
METRICS_LINE = r"metrics\.listening address=127\.0\.0\.1:(\d+)"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> dict:
    status, text = get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metrics_port(proc: Proc) -> int:
    return int(re.search(METRICS_LINE, proc.wait_for_log(METRICS_LINE)).group(1))


def start_edge_with_metrics(tmp: Path) -> tuple[Edge, int]:
    edge = start_edge(tmp, serve_args=("--metrics", "127.0.0.1:0"))
    return edge, metrics_port(edge.proc)


@pytest.fixture
def metered_edge(tmp_path):
    edge, port = start_edge_with_metrics(tmp_path)
    yield edge, port
    for proc in reversed(edge.procs):
        if proc.alive():
            os.kill(proc.pid, signal.SIGCONT)  # in case a failure left it stopped
        proc.stop()


def dns_rcode(edge: Edge, name: str) -> str:
    reply = DNSRecord.parse(DNSRecord.question(name, "A").send("127.0.0.1", edge.dns_port, timeout=5))
    return RCODE[reply.header.rcode]


def test_metrics_and_readiness_after_a_known_workload(metered_edge):
    edge, edge_metrics = metered_edge
    assert get(edge_metrics, "/healthcheck") == (200, "OK\n")
    status, body = get(edge_metrics, "/ready")
    assert status == 200 and json.loads(body)["listeners"]["tunnel"] == f"127.0.0.1:{edge.tunnel_port}"

    env = edge.login("alice")
    tunnel_id = edge.cli("burrow", "tunnel", "create", "my-web-tunnel", env=env).stdout.strip()
    edge.cli("burrow", "tunnel", "route", "dns", "my-web-tunnel", f"app.{ZONE}", env=env)
    creds_path = Path(env["BURROW_HOME"]) / "my-web-tunnel" / "credentials.json"

    # 3 registrations with a forged secret: each connector exits with the auth exit code
    forged = json.loads(creds_path.read_text())
    forged["TunnelSecret"] = base64.b64encode(os.urandom(32)).decode()
    forged_path = edge.tmp / "forged.json"
    forged_path.write_text(json.dumps(forged))
    for _ in range(FORGED_RUNS):
        result = edge.cli(
            "burrow", "tunnel", "run", "--credentials-file", forged_path, "--ha-connections", "1", "my-web-tunnel",
            env=env, check=False,
        )
        assert result.returncode == 3, result.stderr

    # the connector's /ready says 503 until its first session registers: hold the edge still meanwhile
    os.kill(edge.proc.pid, signal.SIGSTOP)
    try:
        connector = edge.start(
            ["burrow", "tunnel", "run", "--metrics", "127.0.0.1:0", "--ha-connections", HA_CONNECTIONS, "my-web-tunnel"],
            "connector", env,
        )
        connector_metrics = metrics_port(connector)
        status, body = get(connector_metrics, "/ready")
        assert status == 503 and json.loads(body)["readyConnections"] == 0
        assert get(connector_metrics, "/healthcheck") == (200, "OK\n")
    finally:
        os.kill(edge.proc.pid, signal.SIGCONT)
    wait_until(lambda: get(connector_metrics, "/ready")[0] == 200, START_TIMEOUT, "the connector to be ready")
    connector.wait_for_log(r"tunnel\.registered index=", count=HA_CONNECTIONS)
    status, body = get(connector_metrics, "/ready")
    assert status == 200 and json.loads(body)["readyConnections"] == HA_CONNECTIONS

    assert [dns_rcode(edge, name) for name in (f"app.{ZONE}", f"nope.{ZONE}", f"gone.{ZONE}", "example.org")] == [
        "NOERROR", "NXDOMAIN", "NXDOMAIN", "REFUSED",
    ]

    # 37 requests: 34 reach the tunnel (no ingress rules: the connector answers 503), 3 name no tunnel (404)
    urls = [f"https://app.{ZONE}:{edge.https_port}/{i}" for i in range(34)]
    urls += [f"https://nope.{ZONE}:{edge.https_port}/{i}" for i in range(3)]
    result = subprocess.run(
        ["curl", "-sS", "--cacert", str(edge.ca), "-w", "%{http_code}\\n",
         "--resolve", f"app.{ZONE}:{edge.https_port}:127.0.0.1", "--resolve", f"nope.{ZONE}:{edge.https_port}:127.0.0.1",
         *(arg for url in urls for arg in ("-o", "/dev/null", url))],
        capture_output=True, text=True, timeout=60,
    )
    assert result.stdout.split() == ["503"] * 34 + ["404"] * 3

    seen = scrape(edge_metrics)
    assert seen[("burrow_edge_requests_total", (("host", f"app.{ZONE}"), ("status_class", "5xx")))] == 34
    assert seen[("burrow_edge_requests_total", (("host", "other"), ("status_class", "4xx")))] == 3
    assert seen[("burrow_edge_request_duration_seconds_count", (("host", f"app.{ZONE}"),))] == 34
    assert seen[("burrow_edge_registrations_total", (("result", "accepted"),))] == HA_CONNECTIONS
    assert seen[("burrow_edge_registrations_total", (("result", "rejected"),))] == FORGED_RUNS
    assert seen[("burrow_edge_sessions", (("tunnel", tunnel_id),))] == HA_CONNECTIONS
    assert seen[("burrow_edge_active_streams", (("tunnel", tunnel_id),))] == 0
    assert seen[("burrow_edge_dns_queries_total", (("rcode", "NOERROR"),))] == 1
    assert seen[("burrow_edge_dns_queries_total", (("rcode", "NXDOMAIN"),))] == 2
    assert seen[("burrow_edge_dns_queries_total", (("rcode", "REFUSED"),))] == 1

    seen = scrape(connector_metrics)
    assert seen[("burrow_connector_sessions", ())] == HA_CONNECTIONS
    assert seen[("burrow_connector_reconnects_total", ())] == 0
    assert all(value == 0 for (name, _), value in seen.items() if name == "burrow_connector_connection_errors_total")

    # the edge goes away: the connector is no longer ready
    edge.proc.stop()
    wait_until(lambda: get(connector_metrics, "/ready")[0] == 503, START_TIMEOUT, "the connector to turn unready")
    status, body = get(connector_metrics, "/ready")
    assert json.loads(body) == {"status": 503, "readyConnections": 0, "connectorId": json.loads(body)["connectorId"]}
    seen = scrape(connector_metrics)
    assert seen[("burrow_connector_sessions", ())] == 0
    lost = sum(value for (name, _), value in seen.items() if name == "burrow_connector_connection_errors_total")
    assert lost >= HA_CONNECTIONS  # every session ended (closed by the draining edge, or unreachable after)


def test_version_flags():
    for program in ("burrow", "burrow-edge"):
        result = subprocess.run([BIN / program, "--version"], capture_output=True, text=True, check=True)
        assert re.fullmatch(rf"{program} version \d+\.\d+\.\d+\S*\n", result.stdout)
