"""Short plain-text error pages for visitors, naming which hop failed."""

from __future__ import annotations

from shared.events import ResponseHead

ERROR_SOURCE = b"burrow-error"


def error_page(status: int, source: str, message: str) -> tuple[ResponseHead, bytes]:
    """A response saying `message`; `source` is edge, connector or origin."""
    body = f"{status} {message}\n".encode()
    headers = (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (ERROR_SOURCE, source.encode()),
    )
    return ResponseHead(status, headers), body
