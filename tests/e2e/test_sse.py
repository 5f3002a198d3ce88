"""Issue 5: server-sent events and other streamed responses go through unbuffered,
and a slow reader pushes back all the way to the origin (bounded memory)."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from tests.e2e.conftest import ZONE
from tests.e2e.tunnels import run_tunnel, tls_socket

HOST = f"sse.{ZONE}"
EVENTS = 20
INTERVAL = 0.1
LATENCY_BOUND = 0.25  # generous: loopback latency is a few ms
FLOOD = 64 * 1024 * 1024
FLOOD_CHUNK = 64 * 1024
BUFFERED_BOUND = 24 * 1024 * 1024  # socket buffers + 1 MiB stream window + writer queue


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    emitted: dict[int, float] = {}
    flood_written = 0

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if self.path == "/events" else "application/octet-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            if self.path == "/events":
                for i in range(EVENTS):
                    time.sleep(INTERVAL)
                    Origin.emitted[i] = time.monotonic()
                    self._chunk(f"id: {i}\ndata: event {i}\n\n".encode())
            else:
                block = b"x" * FLOOD_CHUNK
                for _ in range(FLOOD // FLOOD_CHUNK):
                    self._chunk(block)
                    Origin.flood_written += len(block)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


@pytest.fixture(scope="module")
def origin(edge):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run_tunnel(edge, "sse-tunnel", [("sse", f"http://127.0.0.1:{server.server_address[1]}")])
    yield server
    server.shutdown()


def request(edge, path: str):
    sock = tls_socket(edge, HOST)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


def test_each_event_arrives_as_it_is_emitted(edge, origin):
    sock = request(edge, "/events")
    received: dict[int, float] = {}
    buffer = b""
    while len(received) < EVENTS:
        data = sock.recv(65536)
        assert data, "stream ended early"
        now = time.monotonic()
        buffer += data
        for line in buffer.split(b"\n"):
            if line.startswith(b"id: "):
                received.setdefault(int(line[4:]), now)
    sock.close()
    delays = sorted(received[i] - Origin.emitted[i] for i in range(EVENTS))
    print(f"\nsse: {EVENTS} events every {INTERVAL * 1000:.0f} ms; delay emission→client "
          f"min {delays[0] * 1000:.1f} ms, median {delays[EVENTS // 2] * 1000:.1f} ms, max {delays[-1] * 1000:.1f} ms")
    assert delays[-1] < LATENCY_BOUND


def test_slow_reader_pushes_back_to_the_origin(edge, origin):
    sock = request(edge, "/flood")
    sock.recv(4096)  # the head and a first chunk, then stop reading
    time.sleep(2.0)
    stalled_at = Origin.flood_written
    print(f"\nsse: origin wrote {stalled_at / 2**20:.1f} MiB of {FLOOD / 2**20:.0f} MiB while the client did not read")
    assert stalled_at < BUFFERED_BOUND
    total = 0
    while data := sock.recv(1 << 20):
        total += len(data)
        if b"0\r\n\r\n" in data[-5:]:
            break
    sock.close()
    assert Origin.flood_written == FLOOD
