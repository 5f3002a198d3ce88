"""A small HTTP/2 client on the h2 library, for tests that drive the edge's HTTP/2 side."""

from __future__ import annotations

import json
import ssl
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import trio
from h2.errors import ErrorCodes


@dataclass
class Response:
    status: int = 0
    headers: list = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    reset: ErrorCodes | None = None
    done: trio.Event = field(default_factory=trio.Event)
    headed: trio.Event = field(default_factory=trio.Event)  # the response's HEADERS arrived
    arrived: trio.Event = field(default_factory=trio.Event)  # set by DATA, renewed by `take`

    def take(self) -> bytes:
        """The body received so far, removed from `body`."""
        data, self.body = bytes(self.body), bytearray()
        self.arrived = trio.Event()
        return data

    def json(self):
        return json.loads(self.body)


class Client:
    """A small HTTP/2 client: one reader task, writes under a lock, per-stream responses."""

    def __init__(self, stream: trio.abc.Stream, authority: str = "app.test") -> None:
        self.stream = stream
        self.authority = authority
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.responses: dict[int, Response] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = trio.Event()
        self._lock = trio.Lock()
        self._window = trio.Event()

    async def flush(self) -> None:
        async with self._lock:
            if data := self.h2.data_to_send():
                await self.stream.send_all(data)

    async def send_raw(self, data: bytes) -> None:
        async with self._lock:
            await self.stream.send_all(data)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.h2.initiate_connection()
        await self.flush()
        task_status.started()
        try:
            while data := await self.stream.receive_some(65536):
                for event in self.h2.receive_data(data):
                    self._on(event)
                await self.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed.set()
            self._window.set()
            for response in self.responses.values():
                response.done.set()
                response.headed.set()
                response.arrived.set()

    def _on(self, event) -> None:
        response = self.responses.get(getattr(event, "stream_id", 0))
        if isinstance(event, h2.events.ResponseReceived):
            response.headers = list(event.headers)
            response.status = int(dict(event.headers)[b":status"])
            response.headed.set()
        elif isinstance(event, h2.events.DataReceived):
            response.body += event.data
            response.arrived.set()
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            response.done.set()
            response.arrived.set()
        elif isinstance(event, h2.events.StreamReset):
            response.reset = event.error_code
            response.done.set()
            response.arrived.set()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._window.set()
            self._window = trio.Event()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def start(self, path: str = "/", method: str = "GET", headers=(), end_stream: bool = True) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        self.responses[stream_id] = Response()
        request = [(":method", method), (":path", path), (":scheme", "https"), (":authority", self.authority), *headers]
        self.h2.send_headers(stream_id, [(k.encode(), v.encode()) for k, v in request], end_stream=end_stream)
        return stream_id

    async def send_data(self, stream_id: int, data: bytes) -> None:
        """DATA frames within the flow-control windows, waiting for credit."""
        offset = 0
        while offset < len(data):
            window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            if window <= 0:
                await self._window.wait()
                continue
            self.h2.send_data(stream_id, data[offset : offset + window])
            offset += window
            await self.flush()

    async def send_body(self, stream_id: int, body: bytes) -> None:
        await self.send_data(stream_id, body)
        self.h2.end_stream(stream_id)
        await self.flush()

    async def request(self, path: str = "/", method: str = "GET", headers=(), body: bytes | None = None) -> Response:
        stream_id = self.start(path, method, headers, end_stream=body is None)
        await self.flush()
        if body is not None:
            await self.send_body(stream_id, body)
        response = self.responses[stream_id]
        with trio.fail_after(30):
            await response.done.wait()
        return response


async def open_h2(port: int, ca: Path, host: str) -> trio.SSLStream:
    """A TLS connection to 127.0.0.1:`port` (SNI `host`, trusting `ca`) that negotiated ALPN h2."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), context, server_hostname=host)
    await stream.do_handshake()
    assert stream.selected_alpn_protocol() == "h2"
    return stream


@asynccontextmanager
async def visitor(port: int, ca: Path, host: str):
    """A `Client` on its own TLS connection, reading in the background, for requests to `host`."""
    stream = await open_h2(port, ca, host)
    client = Client(stream, authority=f"{host}:{port}")
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        yield client
        nursery.cancel_scope.cancel()
    with trio.move_on_after(1) as cleanup:
        cleanup.shield = True
        await stream.aclose()
