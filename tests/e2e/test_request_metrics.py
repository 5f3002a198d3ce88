"""Issue 19: requests of known statuses through a real edge and connector; both count each one
once by hostname and status class, the connector's own 502/504 answers and origin failures by
kind included; and the metric names docs/operations.md lists are exactly the ones served."""

from __future__ import annotations

import re
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.e2e.conftest import REPO, START_TIMEOUT, ZONE, Edge, Proc, free_port, start_edge, start_origin, wait_until
from tests.e2e.test_metrics import get, metrics_port, scrape
from tests.e2e.test_websocket import EchoOrigin
from tests.e2e.tunnels import edge_context, tcp_socket

OK, DOWN, SLOW, WS = (f"{label}.{ZONE}" for label in ("ok", "down", "slow", "ws"))
TLS_TIMEOUT = "1s"
# host → (path, curl's URL glob count, status): 200 and 404 from the origin, 502 from a refused
# origin, 504 from one that never finishes the TLS handshake (tlsTimeout)
WORKLOAD = [(OK, "/n[1-4]", 4, 200), (OK, "/m[1-3]?status=404", 3, 404), (DOWN, "/d[1-2]", 2, 502), (SLOW, "/s[1-2]", 2, 504)]
assert WORKLOAD


@dataclass
class Metered:
    edge: Edge
    edge_metrics: int
    connector: Proc
    connector_metrics: int


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("request-metrics")
    edge = start_edge(tmp, serve_args=("--metrics", "127.0.0.1:0"))
    stalled = socket.socket()  # accepts TCP (the kernel's backlog) and never speaks TLS
    ws_origin = EchoOrigin()
    try:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(16)
        env = edge.login("counter")
        edge.cli("burrow", "tunnel", "create", "counted", env=env)
        for host in (OK, DOWN, SLOW, WS):
            edge.cli("burrow", "tunnel", "route", "dns", "counted", host, env=env)
        origin, origin_port = start_origin(tmp, env)
        edge.procs.append(origin)
        config = Path(env["BURROW_HOME"]) / "config.yml"
        config.write_text(
            f"tunnel: counted\ningress:\n"
            f"  - hostname: {OK}\n    service: http://127.0.0.1:{origin_port}\n"
            f"  - hostname: {DOWN}\n    service: http://127.0.0.1:{free_port()}\n"
            f"  - hostname: {SLOW}\n    service: https://127.0.0.1:{stalled.getsockname()[1]}\n"
            f"    originRequest: {{tlsTimeout: {TLS_TIMEOUT}}}\n"
            f"  - hostname: {WS}\n    service: ws://127.0.0.1:{ws_origin.port}\n"
            f"  - service: http_status:404\n"
        )
        connector = edge.start(
            ["burrow", "tunnel", "run", "--config", config, "--ha-connections", "1", "--metrics", "127.0.0.1:0"],
            "connector", env,
        )
        connector.wait_for_log(r"tunnel\.registered index=")
        yield Metered(edge, metrics_port(edge.proc), connector, metrics_port(connector))
    finally:
        ws_origin.server.shutdown()
        stalled.close()
        for proc in reversed(edge.procs):
            proc.stop()


def curl_statuses(edge: Edge, host: str, path: str) -> list[int]:
    result = edge.curl(host, path, "-o", "/dev/null", "-w", "%{http_code}\\n", timeout=30)
    assert result.returncode == 0, result.stderr
    return [int(code) for code in result.stdout.split()]


def websocket_round_trip(edge: Edge) -> None:
    with connect(f"wss://{WS}:{edge.https_port}/", sock=tcp_socket(edge), ssl=edge_context(edge), open_timeout=20) as ws:
        ws.send("counted")
        assert ws.recv(timeout=10) == "counted"


def rises(before: dict, after: dict, name: str) -> dict[tuple, float]:
    """What each series of `name` rose by, without its `name` and the series that stayed."""
    keys = {key for key in (*before, *after) if key[0] == name}
    rose = {key[1]: after.get(key, 0) - before.get(key, 0) for key in keys}
    return {labels: value for labels, value in rose.items() if value}


def by_host_and_class(counts: dict) -> dict[tuple[str, str], float]:
    return {(dict(labels)["host"], dict(labels)["status_class"]): value for labels, value in counts.items()}


def test_both_sides_count_each_request_once_by_host_and_status_class(metered):
    edge = metered.edge
    before = {side: scrape(port) for side, port in (("edge", metered.edge_metrics), ("connector", metered.connector_metrics))}

    for host, path, count, status in WORKLOAD:
        assert curl_statuses(edge, host, path) == [status] * count
    websocket_round_trip(edge)

    expected = Counter()
    for host, _, count, status in WORKLOAD:
        expected[(host, f"{status // 100}xx")] += count
    expected[(WS, "1xx")] += 1
    total = sum(expected.values())
    for side, port, prefix in (("edge", metered.edge_metrics, "burrow_edge"), ("connector", metered.connector_metrics, "burrow_connector")):

        def counted():  # the WebSocket is counted once its pipe has closed on that side
            rose = by_host_and_class(rises(before[side], scrape(port), f"{prefix}_requests_total"))
            return rose if sum(rose.values()) >= total else None

        assert wait_until(counted, START_TIMEOUT, f"the {side} to count {total} requests") == dict(expected), side

    after = scrape(metered.connector_metrics)
    errors = rises(before["connector"], after, "burrow_connector_origin_errors_total")
    assert {tuple(dict(labels).values()) for labels in errors} == {(DOWN, "refused"), (SLOW, "timeout")}
    assert errors[(("host", DOWN), ("kind", "refused"))] == 2 and errors[(("host", SLOW), ("kind", "timeout"))] == 2
    durations = rises(before["connector"], after, "burrow_connector_request_duration_seconds_count")
    assert durations == {(("host", OK),): 7, (("host", DOWN),): 2, (("host", SLOW),): 2, (("host", WS),): 1}
    upgrades = rises(before["connector"], after, "burrow_connector_upgrades_total")
    assert upgrades == {(("host", WS), ("protocol", "websocket")): 1}
    assert rises(before["connector"], after, "burrow_connector_response_bytes_total")[(("host", OK),)] > 0
    assert after[("burrow_connector_concurrent_requests", ())] == 0


def documented_metrics() -> set[str]:
    """The metric names in docs/operations.md's tables (first column)."""
    text = (REPO / "docs" / "operations.md").read_text()
    return set(re.findall(r"^\| `(burrow_\w+)` \|", text, re.MULTILINE))


def served_metrics(port: int) -> set[str]:
    """The names /metrics serves (counters with `_total`), without the standard `process_*` and
    prometheus-client's `*_created` timestamps (served as gauges of their own)."""
    status, text = get(port, "/metrics")
    assert status == 200
    return {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(text)
        if not family.name.startswith("process_") and not family.name.endswith("_created")
    }


# Served only when a flag turns their feature on (their own tests scrape them).
ONLY_WITH_A_FLAG = {
    "burrow_edge_quick_tunnels",  # --quick-tunnels (test_quick_tunnels.py)
    "burrow_edge_worker_requests_total",  # --workers N (test_edge_workers.py)
    "burrow_edge_forwarded_requests_total",  # --workers N
}


def test_documented_metric_names_equal_the_served_ones(metered):
    assert curl_statuses(metered.edge, OK, "/") == [200]
    documented = documented_metrics() - ONLY_WITH_A_FLAG
    for port, prefix in ((metered.edge_metrics, "burrow_edge_"), (metered.connector_metrics, "burrow_connector_")):
        served = served_metrics(port)
        assert served and all(name.startswith(prefix) for name in served)
        assert {name for name in documented if name.startswith(prefix)} == served


def test_the_connector_log_has_no_traceback(metered):
    assert metered.connector.alive() and "Traceback" not in metered.connector.log()
