"""A small HTTP/2 client on the h2 library, for tests that drive the edge's HTTP/2 side."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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

    def _on(self, event) -> None:
        response = self.responses.get(getattr(event, "stream_id", 0))
        if isinstance(event, h2.events.ResponseReceived):
            response.headers = list(event.headers)
            response.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            response.body += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            response.done.set()
        elif isinstance(event, h2.events.StreamReset):
            response.reset = event.error_code
            response.done.set()
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

    async def send_body(self, stream_id: int, body: bytes) -> None:
        offset = 0
        while offset < len(body):
            window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            if window <= 0:
                await self._window.wait()
                continue
            self.h2.send_data(stream_id, body[offset : offset + window])
            offset += window
            await self.flush()
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
