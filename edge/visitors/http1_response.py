"""The edge's answer to one HTTP/1.1 request, as bytes (sans-IO), framed as h11 framed it.

A body goes out as its Content-Length says, else chunked to an HTTP/1.1 visitor, or up to
the connection's close to an HTTP/1.0 one; none for HEAD, 204 and 304. The connection is
kept alive unless the visitor, the edge (draining) or the framing ends it: then the head
says `Connection: close`. Every error is a `ValueError` (a response the tunnel got wrong).
"""

from __future__ import annotations

import re

from shared.events import Headers
from shared.http1_wire import BodyFraming, field_lines, reason

CONTENT_LENGTH = re.compile(rb"[0-9]{1,20}")
CLOSE = b"connection: close\r\n"


def informational(status: int, headers: Headers) -> bytes:
    """A 1xx head (100 Continue, 101 Switching Protocols)."""
    return b"HTTP/1.1 %d %b\r\n%b\r\n" % (status, reason(status), field_lines(headers))


class Response:
    """The response to one request: `head`, then `body` pieces, then `end`."""

    def __init__(self, method: bytes, http10: bool, keep_alive: bool) -> None:
        self.method = method
        self.http10 = http10
        self.keep_alive = keep_alive  # (the request allows it)
        self.ended = False
        self._framing = BodyFraming(0)

    def head(self, status: int, headers: Headers, closing: bool) -> bytes:
        """The status line and header section; `closing`: the edge ends the connection after."""
        if not 200 <= status < 1000:
            raise ValueError(f"status {status} for a final response")
        headers, length = _content_length(headers)
        extra, bodiless = b"", self.method == b"HEAD"  # (HEAD: the headers a GET would get)
        if status in (204, 304):
            bodiless = True
        elif length is not None:
            self._framing = BodyFraming(length)
        elif not self.http10:
            extra, self._framing = b"transfer-encoding: chunked\r\n", BodyFraming(None, chunked=True)
        elif not bodiless:
            self._framing, self.keep_alive = BodyFraming(None), False  # the body ends with the connection
        if bodiless:
            self._framing = BodyFraming(0)
        if closing or not self.keep_alive:
            self.keep_alive = False
            extra += CLOSE
        return b"HTTP/1.1 %d %b\r\n%b%b\r\n" % (status, reason(status), field_lines(headers), extra)

    def body(self, data: bytes) -> bytes:
        return self._framing.body(data)

    def end(self) -> bytes:
        data = self._framing.end()
        self.ended = True
        return data


def _content_length(headers: Headers) -> tuple[Headers, int | None]:
    """`headers` with one Content-Length (equal ones, or a list of equal values, merged as
    h11 merged them) and its value; None without one."""
    values = [value for name, value in headers if name == b"content-length"]
    if not values:
        return headers, None
    if len(values) == 1 and values[0].isdigit() and len(values[0]) <= 20:  # nearly always: one plain value
        return headers, int(values[0])
    lengths = {length.strip() for value in values for length in value.split(b",")}
    if len(lengths) != 1 or not CONTENT_LENGTH.fullmatch(length := lengths.pop()):
        raise ValueError(f"invalid Content-Length {values!r}")
    if len(values) > 1 or values[0] != length:
        first = next(i for i, (name, _) in enumerate(headers) if name == b"content-length")
        headers = tuple(
            (name, length) if i == first else (name, value)
            for i, (name, value) in enumerate(headers)
            if name != b"content-length" or i == first
        )
    return headers, int(length)
