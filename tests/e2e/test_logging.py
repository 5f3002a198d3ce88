"""Issue 8: log flags, the edge's access log and one request id seen by edge, connector and origin."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import ZONE, start_edge, start_origin, wait_until

HOST = f"app.{ZONE}"


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Edge: JSON log, access log in its own file. Connector: the default level (info), text log in a file."""
    tmp = tmp_path_factory.mktemp("logging")
    access = tmp / "access.log"
    edge = start_edge(tmp, serve_args=("--log-format", "json", "--access-log", access))
    try:
        env = edge.login("logger")
        tunnel_id = edge.cli("burrow", "tunnel", "create", "logged", env=env).stdout.strip()
        edge.cli("burrow", "tunnel", "route", "dns", "logged", HOST, env=env)
        origin, port = start_origin(tmp, env)
        edge.procs.append(origin)
        config = Path(env["BURROW_HOME"]) / "config.yml"
        config.write_text(f"tunnel: logged\ningress:\n  - service: http://127.0.0.1:{port}\n")
        connector_log = tmp / "connector-file.log"
        edge.start(
            ["burrow", "tunnel", "run", "--config", config, "--ha-connections", "1", "--logfile", connector_log],
            "connector", env,
        )
        wait_until(lambda: connector_log.exists() and "tunnel.registered" in connector_log.read_text(), 20, "the tunnel")
        yield edge, tunnel_id, access, connector_log
    finally:
        for proc in reversed(edge.procs):
            proc.stop()


def fetch(edge, path: str, *extra: str) -> dict:
    return json.loads(fetch_body(edge, path, *extra))


def fetch_body(edge, path: str, *extra: str) -> bytes:
    result = edge.curl(HOST, path, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def received_id(echo: dict) -> str:
    return dict(echo["headers"])["burrow-request-id"]


def access_entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_request_id_in_edge_access_log_connector_log_and_origin(logged):
    edge, tunnel_id, access, connector_log = logged
    body = fetch_body(edge, "/traced?x=1")
    echo = json.loads(body)
    rid = received_id(echo)
    assert re.fullmatch(r"[0-9a-f]{32}", rid)

    entries = wait_until(
        lambda: [e for e in access_entries(access) if e.get("request_id") == rid], 10, "the access log line"
    )
    [entry] = entries
    assert entry["logger"] == "edge.access_log"
    assert (entry["host"], entry["method"], entry["path"], entry["status"]) == (HOST, "GET", "/traced?x=1", 200)
    assert (entry["client"], entry["tunnel"], entry["bytes_in"]) == ("127.0.0.1", tunnel_id, 0)
    assert entry["bytes_out"] == len(body)
    assert entry["duration_ms"] >= 0

    line = wait_until(
        lambda: next((ln for ln in connector_log.read_text().splitlines() if f"request_id={rid}" in ln), None),
        10, "the connector's request line",
    )
    assert " INFO connector.access_log access " in line and f"host={HOST}" in line and "method=GET" in line
    assert "path=/traced?x=1" in line and "status=200" in line and "origin=http://127.0.0.1:" in line
    assert f"bytes_out={len(body)} " in line and "rule=1 " in line
    # the access log has its own file: nothing of it in the edge's main log, which is JSON lines
    main = [json.loads(ln) for ln in edge.proc.log().splitlines() if ln.startswith("{")]
    assert main and not any(e["logger"] == "edge.access_log" for e in main)
    [listening] = [e for e in main if e.get("event") == "edge.listening"]
    assert listening["zone"] == ZONE and listening["https"] == f"127.0.0.1:{edge.https_port}"


def test_visitor_request_id_is_kept_when_plain_and_replaced_when_not(logged):
    edge, _, access, connector_log = logged
    assert received_id(fetch(edge, "/mine", "-H", "Burrow-Request-Id: trace-42.a_b")) == "trace-42.a_b"
    replaced = received_id(fetch(edge, "/spoof", "-H", "Burrow-Request-Id: bad id\"x"))
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    wait_until(lambda: "request_id=trace-42.a_b" in connector_log.read_text(), 10, "the kept id in the connector log")
    # The edge writes a request's access line once the response has gone out: it may trail curl's exit.
    wanted = {"trace-42.a_b", replaced}
    ids = wait_until(lambda: wanted <= (seen := {e["request_id"] for e in access_entries(access)}) and seen, 10, "both ids logged")
    assert wanted <= ids


def test_unrouted_host_is_logged_without_tunnel(logged):
    edge, _, access, _ = logged
    result = edge.curl(f"nowhere.{ZONE}", "/x")
    assert result.returncode == 0
    entry = wait_until(
        lambda: next((e for e in access_entries(access) if e["host"] == f"nowhere.{ZONE}"), None), 10, "the 404 line"
    )
    assert (entry["status"], entry["tunnel"]) == (404, "-")


BAD_FLAGS = [
    (("--log-format", "xml"), "--log-format must be one of text, json, not 'xml'"),
    (("--loglevel", "loud"), "--loglevel must be one of debug, info, warning, error, not 'loud'"),
    (("--logfile", "/nonexistent-dir/x.log"), "cannot open log file /nonexistent-dir/x.log"),
]


@pytest.mark.parametrize(
    "args, message", [*BAD_FLAGS, (("--access-log", "/nonexistent-dir/x.log"), "cannot open log file /nonexistent-dir/x.log")]
)
def test_bad_edge_log_flags_are_refused_clearly(logged, tmp_path, args, message):
    result = logged[0].cli("burrow-edge", "serve", "--home", tmp_path, *args, check=False)
    assert result.returncode != 0
    assert f"error: {message}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", BAD_FLAGS)
def test_bad_connector_log_flags_are_refused_clearly(logged, args, message):
    result = logged[0].cli("burrow", "tunnel", "run", "--url", "http://127.0.0.1:1", *args, check=False)
    assert result.returncode != 0
    assert f"error: {message}" in result.stderr and "Traceback" not in result.stderr
