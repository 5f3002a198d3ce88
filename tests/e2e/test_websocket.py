"""Issue 5: WebSocket through the tunnel — a real `websockets` echo origin behind a real
edge and connector, a real `websockets` client: messages of all sizes intact both ways,
close codes from either side, a non-101 answer passed on, a message over the origin's
size limit closed with 1009 and no stream left open on the edge or the connector."""

from __future__ import annotations

import os
import threading
import time

import pytest
import trio
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import Protocol, Side, State
from websockets.sync.client import connect
from websockets.sync.server import serve

from tests.e2e.conftest import ZONE, start_edge, wait_until
from tests.e2e.test_metrics import metrics_port, scrape
from tests.e2e.tunnels import edge_context, run_tunnel, tcp_socket
from tests.h2_client import Client, visitor

HOST = f"ws.{ZONE}"
LIMITED_HOST = f"wsmax.{ZONE}"
ORIGIN_MAX_SIZE = 64 * 1024  # the limited origin's `websockets` max_size
SMALL_MESSAGES = 5_000  # text + binary each: 10,000 messages
BIG = 1024 * 1024


class EchoOrigin:
    def __init__(self, max_size: int | None = None) -> None:
        self.close_codes: list[int | None] = []
        self.server = serve(self.handle, "127.0.0.1", 0, max_size=max_size, process_request=self.refuse)
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
def edge(tmp_path_factory):
    """This module's own edge, with /metrics on, to read its open-stream gauge."""
    edge = start_edge(tmp_path_factory.mktemp("ws"), serve_args=("--metrics", "127.0.0.1:0"))
    edge.metrics_port = metrics_port(edge.proc)
    yield edge
    for proc in reversed(edge.procs):
        proc.stop()


@pytest.fixture(scope="module")
def origin(edge):
    origin, limited = EchoOrigin(), EchoOrigin(max_size=ORIGIN_MAX_SIZE)
    origin.connector = run_tunnel(
        edge, "ws-tunnel", [("ws", f"ws://127.0.0.1:{origin.port}"), ("wsmax", f"ws://127.0.0.1:{limited.port}")]
    )
    origin.limited = limited
    yield origin
    origin.server.shutdown()
    limited.server.shutdown()


def open_edge_streams(edge) -> float:
    """Tunnel streams the edge holds open, over every tunnel (`burrow_edge_active_streams`)."""
    return sum(value for (name, _), value in scrape(edge.metrics_port).items() if name == "burrow_edge_active_streams")


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
    origin.connector.wait_for_log(r"upgrade\.refused rule=1 protocol=websocket status=403", timeout=10)
    wait_until(lambda: open_edge_streams(edge) == 0, 10, "the edge to release the refused upgrade's stream")


def test_unrouted_host_answers_404_to_an_upgrade(edge, origin):
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        client(edge, "/", f"nope.{ZONE}")
    assert info.value.response.status_code == 404


def test_plain_requests_still_work_after_upgrades(edge, origin):
    result = edge.curl(HOST, "/")
    assert result.returncode == 0, result.stderr


def test_message_over_the_origins_size_limit_is_closed_with_1009(edge, origin):
    # The edge and connector relay upgraded bytes without parsing frames: the size limit is
    # the origin's, and its close code must reach the client with nothing left open.
    with client(edge, host=LIMITED_HOST) as ws:
        ws.send(b"x" * ORIGIN_MAX_SIZE)
        assert ws.recv(timeout=10) == b"x" * ORIGIN_MAX_SIZE
        assert open_edge_streams(edge) >= 1  # the gauge sees this WebSocket
        ws.send(b"x" * (ORIGIN_MAX_SIZE + 1))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd.code == 1009  # "message too big"
    # The origin "fails" the connection (RFC 6455 §7.1.7): its close frame, then TCP close at once.
    wait_until(lambda: origin.limited.close_codes, 10, "the origin's handler to end")
    wait_until(lambda: open_edge_streams(edge) == 0, 10, "the edge to release the WebSocket's stream")
    with client(edge, host=LIMITED_HOST) as ws:  # the route still works
        ws.send("after")
        assert ws.recv(timeout=10) == "after"


# RFC 8441: WebSocket over HTTP/2 (extended CONNECT), with the h2 library as the client ---------


class H2WebSocket:
    """A WebSocket over one extended-CONNECT stream: `websockets`' frame layer over h2 DATA."""

    def __init__(self, client: Client, stream_id: int) -> None:
        self.client, self.stream_id = client, stream_id
        self.protocol = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)

    async def flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                await self.client.send_data(self.stream_id, data)

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_binary(message)
        await self.flush()

    async def recv(self) -> Frame:
        """The next complete data or close frame (unfragmented, as `websockets` servers send)."""
        response = self.client.responses[self.stream_id]
        while True:
            for event in self.protocol.events_received():
                if event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE):
                    return event
            await self.flush()  # pongs, close replies
            with trio.fail_after(30):
                await response.arrived.wait()
            if data := response.take():
                self.protocol.receive_data(data)
            elif response.done.is_set():
                self.protocol.receive_eof()
                raise AssertionError(f"the stream ended without a close frame (reset: {response.reset})")


async def open_h2_websocket(edge, path: str = "/", protocol: str = "websocket", host: str = HOST):
    """An h2 client on its own connection, and the extended CONNECT it opened (answer awaited)."""
    visit = visitor(edge.https_port, edge.ca, host)
    client = await visit.__aenter__()
    with trio.fail_after(10):
        while client.h2.remote_settings.enable_connect_protocol != 1:  # the edge's SETTINGS
            await client._window.wait()
    stream_id = client.start(path, "CONNECT", headers=[(":protocol", protocol), ("sec-websocket-version", "13")],
                             end_stream=False)
    await client.flush()
    with trio.fail_after(20):
        await client.responses[stream_id].headed.wait()
    return visit, client, stream_id


async def test_websocket_over_http2_extended_connect(edge, origin):
    visit, client, stream_id = await open_h2_websocket(edge)
    try:
        response = client.responses[stream_id]
        assert response.status == 200
        names = [name for name, _ in response.headers]
        assert b"sec-websocket-accept" not in names and b"upgrade" not in names
        ws = H2WebSocket(client, stream_id)
        for i in range(500):
            await ws.send(f"message {i}")
            assert (await ws.recv()).data == f"message {i}".encode()
        for size in (BIG, 3 * BIG // 2):
            blob = os.urandom(size)
            await ws.send(blob)
            frame = await ws.recv()
            assert (frame.opcode, frame.data == blob) == (Opcode.BINARY, True)
        before = len(origin.close_codes)
        ws.protocol.send_close(4005, "h2 client says bye")
        await ws.flush()
        frame = await ws.recv()
        assert Close.parse(frame.data).code == 4005  # the origin's echo of the close
        with trio.fail_after(10):
            await response.done.wait()  # the origin closed its TCP connection: the edge ended the stream
            client.h2.end_stream(stream_id)  # as a WebSocket client closes its TCP connection
            await client.flush()
            while len(origin.close_codes) == before:
                await trio.sleep(0.05)
        assert origin.close_codes[before] == 4005
    finally:
        await visit.__aexit__(None, None, None)
    assert "http2.websocket client=127.0.0.1" in edge.proc.log()


async def test_origin_close_code_reaches_an_http2_client(edge, origin):
    visit, client, stream_id = await open_h2_websocket(edge)
    try:
        ws = H2WebSocket(client, stream_id)
        await ws.send("close-please")
        frame = await ws.recv()
        assert (Close.parse(frame.data).code, Close.parse(frame.data).reason) == (4001, "origin says bye")
    finally:
        await visit.__aexit__(None, None, None)


@pytest.mark.parametrize(
    "path, protocol, status, text",
    [("/refuse", "websocket", 403, b"no websocket here"), ("/", "chat", 501, b"extended CONNECT for 'chat'")],
    ids=["origin-refuses", "unknown-protocol"],
)
async def test_refused_extended_connect_gets_the_answer(edge, origin, path, protocol, status, text):
    visit, client, stream_id = await open_h2_websocket(edge, path, protocol)
    try:
        response = client.responses[stream_id]
        with trio.fail_after(10):
            await response.done.wait()
        assert response.status == status
        assert text in response.body
    finally:
        await visit.__aexit__(None, None, None)


def test_no_stream_is_left_open_afterwards(edge, origin):
    """Run last: a connector with a stuck stream would sit out its whole drain grace period."""
    wait_until(lambda: open_edge_streams(edge) == 0, 10, "the edge to release every stream")
    start = time.monotonic()
    origin.connector.stop()
    assert origin.connector.popen.returncode == 0
    assert time.monotonic() - start < 10, "the connector waited for streams that never ended"
