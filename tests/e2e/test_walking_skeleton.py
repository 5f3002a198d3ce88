"""Issue 2 acceptance: the whole user flow through real CLIs, real sockets and real curl."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import time
import uuid
from pathlib import Path

from tests.e2e.conftest import ZONE
from tests.e2e.origin import BLOCK, pattern_block

MIB = 1024 * 1024


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_config_state_and_dev_ca(edge):
    assert (edge.home / "edge.yml").read_text().startswith("zone: example.test")
    assert (edge.home / "registry.db").exists()
    assert "BEGIN CERTIFICATE" in edge.ca.read_text()
    assert mode(edge.home / "ca-key.pem") == 0o600
    assert mode(edge.home / "registry.db") == 0o600
    assert mode(edge.ca) == 0o644
    assert edge.proc.alive()


def test_edge_certificate_covers_its_public_ip(edge):
    result = subprocess.run(
        ["curl", "-sS", "--cacert", str(edge.ca), f"{edge.url}/api/v1/edge"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"error": "missing bearer token"} or "error" in json.loads(result.stdout)


def test_login_writes_private_account_credential(stack):
    cert = Path(stack.env["BURROW_HOME"]) / "cert.pem"
    assert mode(cert) == 0o600
    text = cert.read_text()
    assert "BEGIN BURROW ACCOUNT TOKEN" in text and "BEGIN CERTIFICATE" in text


def test_create_prints_uuid_and_writes_private_credentials(stack):
    assert str(uuid.UUID(stack.tunnel_id)) == stack.tunnel_id
    path = Path(stack.env["BURROW_HOME"]) / "my-web-tunnel" / "credentials.json"
    assert mode(path) == 0o600
    creds = json.loads(path.read_text())
    assert creds["TunnelID"] == stack.tunnel_id
    assert {"AccountTag", "TunnelName", "TunnelSecret", "Endpoint", "EdgeCA", "EdgeName"} <= creds.keys()
    assert creds["EdgeName"] == ZONE  # connectors verify the edge's certificate by its zone, not its IP
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


def test_route_dns_records_the_cname_and_says_so(stack):
    result = stack.edge.cli("burrow", "tunnel", "route", "dns", "my-web-tunnel", f"app.{ZONE}", env=stack.env)
    assert f"app.{ZONE}" in result.stdout
    assert f"{stack.tunnel_id}.tunnels.{ZONE}" in result.stdout


def test_run_registers_four_connections(stack):
    log = stack.connector.log()
    assert sorted(set(int(i) for i in __import__("re").findall(r"tunnel\.registered index=(\d)", log))) == [0, 1, 2, 3]
    assert stack.edge.proc.log().count("session.registered") >= 4


def test_request_reaches_origin_with_everything_preserved(stack):
    result = stack.edge.curl(
        f"app.{ZONE}", "/p/a%20b?q=1&q=2&status=201", "-X", "PATCH", "-i", "--http1.1",
        "-H", "X-Custom: One", "-H", "X-Custom: Two", "-H", "X-Forwarded-For: 6.6.6.6",
        "-H", "Burrow-Connecting-IP: 6.6.6.6", "--data-binary", "hello",
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 201 Created")
    assert "x-origin: echo" in head
    assert "set-cookie: a=1" in head and "set-cookie: b=2" in head
    echo = json.loads(body)
    assert echo["method"] == "PATCH"
    assert echo["target"] == "/p/a%20b?q=1&q=2&status=201"
    assert echo["body_length"] == 5
    headers = echo["headers"]
    assert [v for k, v in headers if k == "x-custom"] == ["One", "Two"]
    assert dict(headers)["host"] == f"app.{ZONE}:{stack.edge.https_port}"
    assert [v for k, v in headers if k == "x-forwarded-for"] == ["127.0.0.1"]
    assert [v for k, v in headers if k == "burrow-connecting-ip"] == ["127.0.0.1"]
    assert dict(headers)["x-forwarded-proto"] == "https"
    assert len(dict(headers)["burrow-request-id"]) == 32


def test_large_bodies_stream_both_ways_in_bounded_memory(stack, tmp_path):
    size_mib = 200
    download = stack.edge.curl(f"app.{ZONE}", f"/download?mb={size_mib}", "-o", str(tmp_path / "down"), timeout=240)
    assert download.returncode == 0, download.stderr
    expected = hashlib.sha256()
    block = pattern_block()
    for _ in range(size_mib * MIB // BLOCK):
        expected.update(block)
    assert hashlib.sha256((tmp_path / "down").read_bytes()).hexdigest() == expected.hexdigest()

    upload_file = tmp_path / "up"
    with open(upload_file, "wb") as handle:
        for _ in range(size_mib):
            handle.write(hashlib.sha256(str(_).encode()).digest() * (MIB // 32))
    upload = stack.edge.curl(f"app.{ZONE}", "/upload", "--data-binary", f"@{upload_file}", timeout=240)
    assert upload.returncode == 0, upload.stderr
    answer = json.loads(upload.stdout)
    assert answer == {"sha256": hashlib.sha256(upload_file.read_bytes()).hexdigest(), "length": size_mib * MIB}

    assert stack.edge.proc.peak_rss_mib() < 150
    assert stack.connector.peak_rss_mib() < 150


def test_two_hundred_concurrent_requests_get_their_own_answers(stack, tmp_path):
    count = 200
    args = ["--parallel", "--parallel-immediate", "--parallel-max", str(count)]
    for i in range(count):
        args += ["-o", str(tmp_path / f"r{i}"), f"https://app.{ZONE}:{stack.edge.https_port}/id/{i}"]
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "--cacert", str(stack.edge.ca),
         "--resolve", f"app.{ZONE}:{stack.edge.https_port}:127.0.0.1", *args],
        capture_output=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    targets = [json.loads((tmp_path / f"r{i}").read_text())["target"] for i in range(count)]
    assert targets == [f"/id/{i}" for i in range(count)]


def test_unknown_host_gets_404_from_the_edge(stack):
    result = stack.edge.curl(f"nowhere.{ZONE}", "/", "-i")
    assert result.stdout.startswith(b"HTTP/1.1 404")
    assert b"burrow-error: edge" in result.stdout
    assert stack.edge.proc.alive()


def test_routed_host_without_connector_gets_502(stack):
    env = stack.env
    stack.edge.cli("burrow", "tunnel", "create", "idle-tunnel", env=env)
    stack.edge.cli("burrow", "tunnel", "route", "dns", "idle-tunnel", f"idle.{ZONE}", env=env)
    result = wait_for_status(stack, f"idle.{ZONE}", b"HTTP/1.1 502")
    assert b"has no connector" in result.stdout
    assert_still_serving(stack)


def test_refusing_origin_gets_502_naming_it(stack):
    result = stack.edge.curl(f"down.{ZONE}", "/", "-i")
    assert result.stdout.startswith(b"HTTP/1.1 502")
    assert b"burrow-error: connector" in result.stdout
    assert f"127.0.0.1:{stack.refused_port}".encode() in result.stdout
    assert_still_serving(stack)


def wait_for_status(stack, host: str, status: bytes, timeout: float = 10) -> subprocess.CompletedProcess:
    """Routes reach the edge's router within its refresh; poll until they do."""
    deadline = time.monotonic() + timeout
    while True:
        result = stack.edge.curl(host, "/", "-i")
        if result.stdout.startswith(status) or time.monotonic() > deadline:
            assert result.stdout.startswith(status), result.stdout
            return result
        time.sleep(0.1)


def assert_still_serving(stack):
    assert stack.edge.proc.alive() and stack.connector.alive()
    result = stack.edge.curl(f"app.{ZONE}", "/after", "-i")
    assert result.stdout.startswith(b"HTTP/1.1 200")
