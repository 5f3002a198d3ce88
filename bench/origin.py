"""A small, fast HTTP/1.1 origin for the tunnel benchmark (trio + h11).

Routes:
    GET  /small        13-byte body, keep-alive
    GET  /blob?mb=N    N MiB of zeros, streamed in 64 KiB chunks
    POST /sink         reads the whole body, answers its byte count

Run as `python bench/origin.py --port-file FILE`: it listens on an ephemeral
loopback port and writes that port to FILE once it is accepting connections.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h11
import trio

SMALL_BODY = b"hello, world\n"
CHUNK = bytes(64 * 1024)
READ_SIZE = 64 * 1024
MAX_BLOB_MB = 4096


class Exchange:
    """One server-side h11 connection over a trio stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER)

    async def next_event(self) -> h11.Event:
        """The next h11 event, reading from the socket as needed."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(await self.stream.receive_some(READ_SIZE))

    async def send(self, *events: h11.Event) -> None:
        """Serialize `events` and write them in one call."""
        await self.stream.send_all(b"".join(self.h11.send(event) or b"" for event in events))

    async def respond(self, status: int, body: bytes) -> None:
        """A complete response with a fixed body."""
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        await self.send(h11.Response(status_code=status, headers=headers), h11.Data(data=body), h11.EndOfMessage())


async def _drain_body(exchange: Exchange) -> int:
    """Read the request body to its end; return its length in bytes."""
    total = 0
    while True:
        event = await exchange.next_event()
        if isinstance(event, h11.Data):
            total += len(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return total
        else:
            raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in a request body")


async def _send_blob(exchange: Exchange, query: str) -> None:
    """Stream `mb` MiB of zeros (from the query string) in 64 KiB chunks."""
    try:
        mb = int(parse_qs(query).get("mb", ["1"])[0])
    except ValueError:
        mb = -1
    if not 0 <= mb <= MAX_BLOB_MB:
        await exchange.respond(400, b"mb must be an integer in 0..4096\n")
        return
    chunks = mb * 16
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(chunks * len(CHUNK)))]
    await exchange.send(h11.Response(status_code=200, headers=headers))
    for _ in range(chunks):
        await exchange.send(h11.Data(data=CHUNK))
    await exchange.send(h11.EndOfMessage())


async def _handle_request(exchange: Exchange, request: h11.Request) -> None:
    """Answer one request; its body is consumed before or while answering."""
    parts = urlsplit(request.target.decode("ascii", "replace"))
    route = (request.method, parts.path)
    if route == (b"POST", "/sink"):
        await exchange.respond(200, b"%d\n" % await _drain_body(exchange))
        return
    await _drain_body(exchange)
    if route == (b"GET", "/small"):
        await exchange.respond(200, SMALL_BODY)
    elif route == (b"GET", "/blob"):
        await _send_blob(exchange, parts.query)
    else:
        await exchange.respond(404, b"not found\n")


async def serve_connection(stream: trio.SocketStream) -> None:
    """Serve requests on one connection until the client closes it."""
    exchange = Exchange(stream)
    try:
        while True:
            event = await exchange.next_event()
            if not isinstance(event, h11.Request):
                return
            await _handle_request(exchange, event)
            if exchange.h11.our_state is not h11.DONE or exchange.h11.their_state is not h11.DONE:
                return
            exchange.h11.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        return
    finally:
        await trio.aclose_forcefully(stream)


async def main(port_file: Path) -> None:
    """Listen on 127.0.0.1:0, publish the port, serve forever."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, port_file)
    await trio.serve_listeners(serve_connection, listeners)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", type=Path, required=True, help="where to write the listening port")
    trio.run(main, parser.parse_args().port_file)
