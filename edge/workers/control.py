"""The supervisor ↔ worker control channel: one JSON object a line over a socketpair.

`encode` and `LineDecoder` are the sans-IO part; `ControlChannel` is the trio shell.
Messages (`type`): supervisor → worker: start, peers, drain, close, stop, scrape;
worker → supervisor: ready, tunnels, idle, metrics.
"""

from __future__ import annotations

import json
import socket

import trio

from shared.errors import ProtocolError

MAX_MESSAGE = 64 * 1024 * 1024  # a metrics scrape with many hostnames is the largest message
READ_SIZE = 256 * 1024


def encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class LineDecoder:
    """Bytes in, complete messages out; a line longer than `MAX_MESSAGE` is an error."""

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict]:
        self._buffer += data
        *lines, rest = self._buffer.split(b"\n")
        if len(rest) > self.limit:
            raise ProtocolError(f"control message longer than {self.limit} bytes")
        self._buffer = bytearray(rest)
        try:
            return [json.loads(line) for line in lines if line]
        except ValueError as exc:
            raise ProtocolError(f"bad control message: {exc}") from exc


class ControlChannel:
    """Messages over one end of a socketpair; `receive` returns None once the peer is gone."""

    def __init__(self, sock: socket.socket) -> None:
        self.stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        self._decoder = LineDecoder()
        self._ready: list[dict] = []
        self._send_lock = trio.Lock()

    async def send(self, message: dict) -> None:
        async with self._send_lock:
            await self.stream.send_all(encode(message))

    async def receive(self) -> dict | None:
        while not self._ready:
            try:
                data = await self.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._ready += self._decoder.feed(data)
        return self._ready.pop(0)
