"""HTTP/2 visitors through the real edge, connector and origin: curl --http2 and h2load."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import pytest

from tests.e2e.conftest import ZONE
from tests.e2e.origin import BLOCK, pattern_block

MIB = 1024 * 1024


def test_request_over_http2_reaches_origin_with_everything_preserved(stack):
    result = stack.edge.curl(
        f"app.{ZONE}", "/p/a%20b?q=1&status=201", "--http2", "-i", "-X", "PATCH",
        "-H", "X-Custom: One", "-H", "X-Custom: Two", "-H", "Cookie: a=1", "-H", "Cookie: b=2",
        "--data-binary", "hello",
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/2 201")
    assert "x-origin: echo" in head
    assert "set-cookie: a=1" in head and "set-cookie: b=2" in head
    echo = json.loads(body)
    assert (echo["method"], echo["target"], echo["body_length"]) == ("PATCH", "/p/a%20b?q=1&status=201", 5)
    headers = echo["headers"]
    assert [v for k, v in headers if k == "x-custom"] == ["One", "Two"]
    assert dict(headers)["host"] == f"app.{ZONE}:{stack.edge.https_port}"
    assert dict(headers)["cookie"] == "a=1; b=2"
    assert dict(headers)["x-forwarded-proto"] == "https"


def test_edge_pages_and_api_answer_over_http2(stack):
    missing = stack.edge.curl(f"nowhere.{ZONE}", "/", "--http2", "-i")
    assert missing.stdout.startswith(b"HTTP/2 404")
    assert b"burrow-error: edge" in missing.stdout
    api = subprocess.run(
        ["curl", "-sS", "--http2", "-w", "\n%{http_version}", "--cacert", str(stack.edge.ca), f"{stack.edge.url}/api/v1/edge"],
        capture_output=True, text=True,
    )
    body, _, version = api.stdout.rpartition("\n")
    assert version == "2" and "error" in json.loads(body)


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_head_requests_to_edge_pages_and_api_get_the_head_only(stack, version):
    for host in (ZONE, f"nowhere.{ZONE}"):  # the edge's API, an edge error page
        answer = stack.edge.curl(host, "/", version, "-I")
        assert answer.returncode == 0, answer.stderr
        status, _, rest = answer.stdout.partition(b"\r\n")
        assert status.split()[1] == b"404" and b"content-length: " in rest.lower()
    assert "Traceback" not in stack.edge.proc.log()


def test_large_bodies_stream_both_ways_over_http2(stack, tmp_path):
    size_mib = 100
    download = stack.edge.curl(f"app.{ZONE}", f"/download?mb={size_mib}", "--http2", "-o", str(tmp_path / "down"), timeout=240)
    assert download.returncode == 0, download.stderr
    expected = hashlib.sha256()
    block = pattern_block()
    for _ in range(size_mib * MIB // BLOCK):
        expected.update(block)
    assert hashlib.sha256((tmp_path / "down").read_bytes()).hexdigest() == expected.hexdigest()

    upload_file = tmp_path / "up"
    with open(upload_file, "wb") as handle:
        for i in range(size_mib):
            handle.write(hashlib.sha256(str(i).encode()).digest() * (MIB // 32))
    upload = stack.edge.curl(f"app.{ZONE}", "/upload", "--http2", "--data-binary", f"@{upload_file}", timeout=240)
    assert upload.returncode == 0, upload.stderr
    answer = json.loads(upload.stdout)
    assert answer == {"sha256": hashlib.sha256(upload_file.read_bytes()).hexdigest(), "length": size_mib * MIB}
    assert stack.edge.proc.peak_rss_mib() < 150


def test_hundred_concurrent_streams_share_one_connection(stack, tmp_path):
    count = 100
    args = ["--http2", "--parallel", "--parallel-max", str(count), "-w", "%{num_connects} %{http_version}\n"]
    for i in range(count):
        args += ["-o", str(tmp_path / f"r{i}"), f"https://app.{ZONE}:{stack.edge.https_port}/id/{i}"]
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "--cacert", str(stack.edge.ca),
         "--resolve", f"app.{ZONE}:{stack.edge.https_port}:127.0.0.1", *args],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert sum(int(n) for n in lines[0::2]) == 1  # one TCP connection carried them all
    assert set(lines[1::2]) == {"2"}
    targets = [json.loads((tmp_path / f"r{i}").read_text())["target"] for i in range(count)]
    assert targets == [f"/id/{i}" for i in range(count)]


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load missing: `make system-deps` installs nghttp2-client")
def test_h2load_gets_no_errors(stack):
    # Acceptance 1 as written: 2,000 requests per connection, under the edge's
    # 10,000 (h2load 1.52 does not reconnect after the graceful GOAWAY).
    port = stack.edge.https_port
    command = [
        "h2load", "-n", "20000", "-c", "10", "-m", "10",
        f"--connect-to=127.0.0.1:{port}", f"https://app.{ZONE}:{port}/h2load",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    print(" ".join(command), "\n", result.stdout, sep="")
    assert result.returncode == 0, result.stdout + result.stderr
    requests = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
        result.stdout,
    )
    assert requests.groups() == ("20000", "20000", "20000", "20000", "0", "0", "0")
    assert "status codes: 20000 2xx" in result.stdout
    assert stack.edge.proc.alive() and stack.connector.alive()
