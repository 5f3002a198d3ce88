"""Issue 5: WebSocket through the tunnel — a real `websockets` echo origin behind a real
edge and connector, a real `websockets` client: messages of all sizes intact both ways,
close codes from either side, a non-101 answer passed on."""

from __future__ import annotations

import os
import threading
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import serve

from tests.e2e.conftest import ZONE
from tests.e2e.tunnels import edge_context, run_tunnel, tcp_socket

HOST = f"ws.{ZONE}"
SMALL_MESSAGES = 5_000  # text + binary each: 10,000 messages
BIG = 1024 * 1024


class EchoOrigin:
    def __init__(self) -> None:
        self.close_codes: list[int | None] = []
        self.server = serve(self.handle, "127.0.0.1", 0, max_size=None, process_request=self.refuse)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.socket.getsockname()[1]

    def refuse(self, connection, request):
        if request.path == "/refuse":
            return connection.respond(403, "no websocket here\n")
        return None

    def handle(self, ws) -> None:
        try:
            for message in ws:
                if message == "close-please":
                    ws.close(4001, "origin says bye")
                    break
                ws.send(message)
        except ConnectionClosed:
            pass
        self.close_codes.append(ws.close_code)


@pytest.fixture(scope="module")
def origin(edge):
    origin = EchoOrigin()
    run_tunnel(edge, "ws-tunnel", [("ws", f"ws://127.0.0.1:{origin.port}")])
    yield origin
    origin.server.shutdown()


def client(edge, path: str = "/", host: str = HOST):
    return connect(
        f"wss://{host}:{edge.https_port}{path}", sock=tcp_socket(edge), ssl=edge_context(edge), max_size=None,
        open_timeout=20,
    )


def test_small_and_large_messages_round_trip_intact(edge, origin):
    with client(edge) as ws:
        start = time.monotonic()
        for i in range(SMALL_MESSAGES):
            text = f"message {i}"
            ws.send(text)
            assert ws.recv(timeout=10) == text
            payload = i.to_bytes(4, "big") * 8
            ws.send(payload)
            assert ws.recv(timeout=10) == payload
        elapsed = time.monotonic() - start
        print(f"\nwebsocket: {2 * SMALL_MESSAGES} small round trips in {elapsed:.2f}s "
              f"= {2 * SMALL_MESSAGES / elapsed:.0f}/s")
        start = time.monotonic()
        for size in (BIG, BIG - 1, 3 * BIG // 2):
            blob = os.urandom(size)
            ws.send(blob)
            assert ws.recv(timeout=30) == blob
            text = "é" * (size // 2)
            ws.send(text)
            assert ws.recv(timeout=30) == text
        print(f"websocket: 6 messages of ~1 MiB echoed in {time.monotonic() - start:.2f}s")


def test_client_close_code_reaches_the_origin(edge, origin):
    with client(edge) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.close(4002, "client says bye")
    deadline = time.monotonic() + 10
    while 4002 not in origin.close_codes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 4002 in origin.close_codes


def test_origin_close_code_reaches_the_client(edge, origin):
    with client(edge) as ws:
        ws.send("close-please")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd.code == 4001
    assert info.value.rcvd.reason == "origin says bye"


def test_origin_refusing_the_upgrade_is_passed_on(edge, origin):
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        client(edge, "/refuse")
    assert info.value.response.status_code == 403
    assert b"no websocket here" in info.value.response.body


def test_unrouted_host_answers_404_to_an_upgrade(edge, origin):
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        client(edge, "/", f"nope.{ZONE}")
    assert info.value.response.status_code == 404


def test_plain_requests_still_work_after_upgrades(edge, origin):
    result = edge.curl(HOST, "/")
    assert result.returncode == 0, result.stderr
