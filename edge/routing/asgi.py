"""A minimal bridge from the edge's HTTP layer to an ASGI app (the admin API).

The request body arrives whole and the response is buffered whole, which
suits small JSON exchanges; larger responses are refused.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import anyio

from shared.errors import BurrowError
from shared.events import RequestHead, ResponseHead

MAX_RESPONSE_BYTES = 1024 * 1024


async def call_asgi(
    app: Any,
    head: RequestHead,
    body: bytes,
    client: tuple[str, int],
    server: tuple[str, int],
) -> tuple[ResponseHead, bytes]:
    """Run one request through `app` and return its buffered response."""
    raw_path, _, query = head.target.partition(b"?")
    headers = list(head.headers)
    if head.header(b"host") is None:
        headers.insert(0, (b"host", head.authority))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": head.method.decode("ascii"),
        "scheme": head.scheme.decode("ascii"),
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": server,
    }
    sent_request = False
    finished = anyio.Event()
    start: dict[str, Any] | None = None
    chunks: list[bytes] = []
    size = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()  # the client "disconnects" once the response is done
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal start, size
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise BurrowError(f"ASGI response exceeds {MAX_RESPONSE_BYTES} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                finished.set()

    await app(scope, receive, send)
    if start is None or not finished.is_set():
        raise BurrowError("ASGI app returned without a complete response")
    response_headers = tuple((k.lower(), v) for k, v in start.get("headers", ()))
    data = b"".join(chunks)
    return ResponseHead(start["status"], response_headers, has_body=bool(data)), data
