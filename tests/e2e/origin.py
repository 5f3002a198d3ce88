"""A real HTTP/1.1 origin for end-to-end tests (trio + h11), run as a subprocess.

    python -m tests.e2e.origin PORT_FILE

ORIGIN_PORT=N listens on that port (default: any free one); ORIGIN_NAME=X answers
with `x-origin: X` (default `echo`); ORIGIN_DELAY=S waits S seconds before each answer.
Routes (with ORIGIN_RECEIPTS=FILE, every request's method and burrow-request-id
are appended to FILE as it arrives):
  /download?mb=N  N MiB of `pattern_block()` repeated
  /upload         reads the body; answers its sha256 and length
  ?delay=S        wait S seconds before answering (any route)
  anything else   JSON echo of method, target and headers; `?status=NNN` sets the status
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from urllib.parse import parse_qs, urlsplit

import h11
import trio

BLOCK = 64 * 1024
RECEIPTS = os.environ.get("ORIGIN_RECEIPTS")  # a file to log every request to, for "seen at most once" checks
NAME = os.environ.get("ORIGIN_NAME", "echo")
DELAY = float(os.environ.get("ORIGIN_DELAY", "0"))


def pattern_block() -> bytes:
    """The deterministic 64 KiB block /download repeats."""
    seed = hashlib.sha256(b"burrow").digest()
    return (seed * (BLOCK // len(seed) + 1))[:BLOCK]


async def send(stream, conn, event):
    await stream.send_all(conn.send(event))


async def next_event(stream, conn):
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(BLOCK))


async def handle(stream):
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await next_event(stream, conn)
            if not isinstance(request, h11.Request):
                return
            await respond(stream, conn, request)
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, h11.RemoteProtocolError):
        return


async def respond(stream, conn, request):
    url = urlsplit(request.target.decode())
    query = parse_qs(url.query)
    if RECEIPTS:  # one line per request that reached the origin: "METHOD burrow-request-id"
        with open(RECEIPTS, "a") as receipts:
            receipts.write(f"{request.method.decode()} {dict(request.headers).get(b'burrow-request-id', b'-').decode()}\n")
    digest, length = hashlib.sha256(), 0
    while isinstance(event := await next_event(stream, conn), h11.Data):
        digest.update(event.data)
        length += len(event.data)
    if "delay" in query or DELAY:  # ?delay=SECONDS: a slow origin, for drain tests
        await trio.sleep(float(query.get("delay", [DELAY])[0]))
    if url.path == "/download":
        size = int(float(query["mb"][0]) * 1024 * 1024)
        await send(stream, conn, h11.Response(status_code=200, headers=[("content-length", str(size))]))
        block = pattern_block()
        for _ in range(size // BLOCK):
            await send(stream, conn, h11.Data(data=block))
        await send(stream, conn, h11.EndOfMessage())
        return
    if url.path == "/upload":
        body = json.dumps({"sha256": digest.hexdigest(), "length": length}).encode()
    else:
        body = json.dumps(
            {
                "method": request.method.decode(),
                "target": request.target.decode(),
                "headers": [[k.decode(), v.decode("latin-1")] for k, v in request.headers],
                "body_length": length,
            }
        ).encode()
    status = int(query.get("status", ["200"])[0])
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("x-origin", NAME),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]
    await send(stream, conn, h11.Response(status_code=status, headers=headers))
    await send(stream, conn, h11.Data(data=body))
    await send(stream, conn, h11.EndOfMessage())


async def main(port_file: str) -> None:
    listeners = await trio.open_tcp_listeners(int(os.environ.get("ORIGIN_PORT", "0")), host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    with open(port_file + ".tmp", "w") as out:
        out.write(str(port))


    os.replace(port_file + ".tmp", port_file)
    await trio.serve_listeners(handle, listeners)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
