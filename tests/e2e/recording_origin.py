"""An in-process HTTP/1.1 origin (h11, one thread per connection) that records every
request head it receives and whether its body arrived complete."""

from __future__ import annotations

import json
import socketserver
import threading
from dataclasses import dataclass, field

import h11

from tests.e2e.tunnels import ThreadingTcpServer


@dataclass
class Received:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    complete: bool = False  # the whole body arrived

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@dataclass
class Record:
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: Received) -> None:
        with self.lock:
            self.requests.append(request)

    def matching(self, text: str) -> list[Received]:
        """Requests whose target, headers or body contain `text`."""
        with self.lock:
            return [
                r for r in self.requests
                if text in r.target or text.encode() in r.body or any(text in k or text in v for k, v in r.headers)
            ]


def _handler(record: Record, response_headers: list[tuple[str, str]]):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            conn = h11.Connection(h11.SERVER)
            try:
                while True:
                    event = self._next(conn)
                    if not isinstance(event, h11.Request):
                        return
                    received = Received(
                        event.method.decode(), event.target.decode("latin-1"),
                        [(k.decode(), v.decode("latin-1")) for k, v in event.headers],
                    )
                    record.add(received)
                    while isinstance(event := self._next(conn), h11.Data):
                        received.body += bytes(event.data)
                    if not isinstance(event, h11.EndOfMessage):
                        return
                    received.complete = True
                    body = json.dumps({"target": received.target, "length": len(received.body)}).encode()
                    headers = [("content-length", str(len(body))), *response_headers]
                    self.request.sendall(conn.send(h11.Response(status_code=200, headers=headers)))
                    self.request.sendall(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
            except (h11.RemoteProtocolError, OSError):
                return

        def _next(self, conn: h11.Connection):
            while (event := conn.next_event()) is h11.NEED_DATA:
                conn.receive_data(self.request.recv(65536))
            return event

    return Handler


def start_recording_origin(response_headers: list[tuple[str, str]] = ()) -> tuple[ThreadingTcpServer, Record]:
    """The origin and its record; each response also carries `response_headers`."""
    record = Record()
    server = ThreadingTcpServer(("127.0.0.1", 0), _handler(record, response_headers))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, record
