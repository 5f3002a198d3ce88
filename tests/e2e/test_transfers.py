"""Issue 15, part 4: large bodies through the real edge and connector arrive whole (sha256 on
both ends, curl as the client, HTTP/1.1 and HTTP/2), and a reader that stops reading holds the
body back instead of having it buffered: with the visitor or the origin stalled, the edge's and
the connector's memory stays bounded while the rest of the body waits at its source."""

from __future__ import annotations

import hashlib
import json
import os
import socketserver
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ZONE, start_origin
from tests.e2e.origin import BLOCK, pattern_block
from tests.e2e.tunnels import ThreadingTcpServer, run_tunnel, tls_socket

BULK = f"bulk.{ZONE}"
STALL = f"stall.{ZONE}"
BIG_MIB = 96  # several times every buffer on the way (1 MiB stream window, 16 MiB session window)
STALLED_MIB = 192
MEMORY_BOUND_MIB = 64  # what a stalled transfer may add to the edge's or the connector's RSS
QUIET_TIMEOUT = 20.0


def pattern_sha256(mib: float) -> str:
    digest = hashlib.sha256()
    block = pattern_block()
    for _ in range(int(mib * 1024 * 1024) // BLOCK):
        digest.update(block)
    return digest.hexdigest()


class StalledOrigin(socketserver.BaseRequestHandler):
    """Reads a request head, waits for `release` before reading the body, then answers the
    body's sha256 and length as the test origin's /upload does."""

    release = threading.Event()

    def handle(self) -> None:
        sock = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            if not (data := sock.recv(65536)):
                return
            head += data
        head, _, body = head.partition(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        self.release.wait(60)
        digest = hashlib.sha256(body)
        received = len(body)
        while received < length and (data := sock.recv(min(1 << 20, length - received))):
            digest.update(data)
            received += len(data)
        answer = json.dumps({"sha256": digest.hexdigest(), "length": received}).encode()
        sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                     b"connection: close\r\n\r\n%s" % (len(answer), answer))


@pytest.fixture(scope="module")
def transfers(edge):
    origin, port = start_origin(edge.tmp, edge.env)
    edge.procs.append(origin)
    stalled = ThreadingTcpServer(("127.0.0.1", 0), StalledOrigin)
    threading.Thread(target=stalled.serve_forever, daemon=True).start()
    connector = run_tunnel(edge, "transfers", [("bulk", f"http://127.0.0.1:{port}"),
                                               ("stall", f"http://127.0.0.1:{stalled.server_address[1]}")])
    yield edge, connector, origin
    StalledOrigin.release.set()
    stalled.shutdown()


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def cpu_ticks(pids: list[int]) -> int:
    return sum(sum(map(int, Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13])) for pid in pids)


def wait_quiet(pids: list[int]) -> None:
    """Until `pids` used CPU, then none of them for half a second: the transfer started and
    stopped moving (at most QUIET_TIMEOUT). Without backpressure it would stop only once the
    whole body is buffered."""
    deadline = time.monotonic() + QUIET_TIMEOUT
    ticks, moved = cpu_ticks(pids), False
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_ticks(pids)
        if now == ticks and moved:
            return
        moved, ticks = moved or now != ticks, now


def curl_sha256(result) -> str:
    assert result.returncode == 0, result.stderr
    return hashlib.sha256(result.stdout).hexdigest()


@pytest.mark.parametrize("protocol", ["--http1.1", "--http2"])
def test_a_large_download_arrives_whole(transfers, protocol):
    edge, _, _ = transfers
    result = edge.curl(BULK, f"/download?mb={BIG_MIB}", protocol, "-o", "-", timeout=120)
    assert len(result.stdout) == BIG_MIB * 1024 * 1024
    assert curl_sha256(result) == pattern_sha256(BIG_MIB)


@pytest.mark.parametrize("protocol", ["--http1.1", "--http2"])
def test_a_large_upload_arrives_whole(transfers, tmp_path, protocol):
    edge, _, _ = transfers
    body = os.urandom(BIG_MIB * 1024 * 1024)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)
    result = edge.curl(BULK, "/upload", protocol, "-T", str(upload), "-H", "Expect:", "-o", "-", timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}


def test_a_rate_limited_curl_download_arrives_whole(transfers):
    edge, _, _ = transfers
    result = edge.curl(BULK, "/download?mb=6", "--limit-rate", "3M", "-o", "-", timeout=60)
    assert curl_sha256(result) == pattern_sha256(6)


def test_a_visitor_that_stops_reading_holds_the_download_back(transfers):
    edge, connector, origin = transfers
    pids = [edge.proc.pid, connector.pid, origin.pid]
    before = {pid: rss_mib(pid) for pid in pids[:2]}
    with tls_socket(edge, BULK) as sock:
        sock.sendall(f"GET /download?mb={STALLED_MIB} HTTP/1.1\r\nHost: {BULK}\r\n\r\n".encode())
        wait_quiet(pids)  # the visitor has read nothing: the pipeline filled up and stopped
        grown = {pid: rss_mib(pid) - before[pid] for pid in before}
        assert all(growth < MEMORY_BOUND_MIB for growth in grown.values()), grown
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        head, _, body = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        digest, received = hashlib.sha256(body), len(body)
        while received < STALLED_MIB * 1024 * 1024 and (data := sock.recv(1 << 20)):
            digest.update(data)
            received += len(data)
    assert received == STALLED_MIB * 1024 * 1024
    assert digest.hexdigest() == pattern_sha256(STALLED_MIB)


def test_an_origin_that_stops_reading_holds_the_upload_back(transfers, tmp_path):
    edge, connector, _ = transfers
    body = os.urandom(STALLED_MIB * 1024 * 1024)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)
    pids = [edge.proc.pid, connector.pid]
    before = {pid: rss_mib(pid) for pid in pids}
    StalledOrigin.release.clear()
    result: list = []
    curl = threading.Thread(target=lambda: result.append(
        edge.curl(STALL, "/upload", "-T", str(upload), "-H", "Expect:", "-o", "-", timeout=120)))
    curl.start()
    try:
        wait_quiet(pids)  # the origin reads nothing: the pipeline filled up and stopped
        grown = {pid: rss_mib(pid) - before[pid] for pid in pids}
    finally:
        StalledOrigin.release.set()
        curl.join(130)
    assert all(growth < MEMORY_BOUND_MIB for growth in grown.values()), grown
    [done] = result
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}
