"""The origin client's HTTP/1.1 on the wire (sans-IO): requests written with checked
fields, responses read by llhttp (httptools), its lenient flags off.

llhttp refuses what h11 refused (conflicting lengths, bad names, bare LF, Content-Length
with Transfer-Encoding) and folded lines too; a Transfer-Encoding other than `chunked` is
refused here, as h11 did. What llhttp cannot know it is not asked: a response to HEAD
ends with its head, and a body without a length ends when the origin closes.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import httptools

from connector.origins.errors import InvalidResponse
from shared.events import Headers
from shared.http1_wire import BodyFraming, field_lines

METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
TARGET = re.compile(rb"[\x21-\x7e]+")


class Request(NamedTuple):
    method: bytes
    target: bytes
    headers: Headers


def write_request(request: Request) -> tuple[bytes, BodyFraming]:
    """The request's head, and the framing its headers give the body (Transfer-Encoding:
    chunked, else Content-Length, else none); ValueError for what cannot be written."""
    method, target, headers = request
    if not METHOD.fullmatch(method) or not TARGET.fullmatch(target):
        raise ValueError(f"invalid request line {method[:20]!r} {target[:100]!r}")
    framing = BodyFraming(0)
    for name, value in headers:
        if name == b"transfer-encoding":
            framing = BodyFraming(None, chunked=True)
        elif name == b"content-length" and not framing.chunked:
            framing = BodyFraming(int(value))
    return b"%b %b HTTP/1.1\r\n%b\r\n" % (method, target, field_lines(headers)), framing


class ResponseReader:
    """The responses of one origin connection, one per request (`start`), read from its bytes."""

    def __init__(self) -> None:
        self._llhttp: httptools.HttpResponseParser | None = None
        self.start(b"GET")

    def start(self, method: bytes, upgrade: bool = False) -> None:
        """Read the response to a `method` request; `upgrade`: it may switch protocols (101)."""
        self._method, self._upgrade = method, upgrade
        self.status = 0
        self.headers: Headers = ()
        self.head_done = self.done = self.reusable = False
        self.trailing = b""  # after a 101: the first bytes of the new protocol
        self._body: list[bytes] = []
        self._fields: list[tuple[bytes, bytes]] = []
        self._until_close = False
        self._length_left = 0  # of a Content-Length body: past its first read, counted here without llhttp
        self._keep_alive = False  # what llhttp said of the connection when the head ended
        self._invalid = ""
        self._extra = False  # bytes where the response had none
        if self._llhttp is None:
            self._llhttp = httptools.HttpResponseParser(self)

    def feed(self, received: bytes | bytearray | memoryview) -> None:
        """Read bytes from the origin; InvalidResponse for a response llhttp or the checks refuse."""
        data = received if type(received) is bytes else bytes(received)
        if self._llhttp is None and self._length_left:
            self._count_body(data)
            return
        try:
            self._llhttp.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserUpgrade as exc:
            self.trailing, self._llhttp = data[exc.args[0]:], None
        except httptools.HttpParserError as exc:
            self._llhttp = None
            if not self.done:
                raise InvalidResponse(f"origin sent an invalid response: {exc}") from None
            self._extra = True  # bytes after the response: the connection is not reused
        if self._invalid:
            raise InvalidResponse(f"origin sent an invalid response: {self._invalid}")
        if self.done and self._method == b"HEAD":
            self._llhttp = None  # it expects the body a GET would get: a fresh one for the next
        if self._extra:
            self.reusable = False
        if self._length_left and self.head_done and not self.done:
            self._llhttp = None  # the rest of the body is counted, not parsed (and not copied by llhttp)

    def _count_body(self, data: bytes) -> None:
        """Body bytes of a Content-Length response past its first read: each read taken as it
        is, where llhttp would scan it and copy it into a new bytes object."""
        left = self._length_left
        if len(data) > left:  # bytes after the response: the connection is not reused
            data, self._extra = data[:left], True
        self._body.append(data)
        self._length_left = left - len(data)
        if not self._length_left:
            self.done = True
            self.reusable = self._keep_alive and not self._extra

    def eof(self) -> None:
        """The origin closed the connection: the end of a body without a length."""
        self._llhttp = None
        if self.head_done and self._until_close:
            self.done = True

    def take_body(self) -> bytes:
        """The body bytes read and not taken yet."""
        body = self._body
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        return data

    # llhttp's callbacks

    def on_message_begin(self) -> None:
        self._fields = []

    def on_header(self, name: bytes, value: bytes) -> None:  # llhttp strips the leading spaces only
        self._fields.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        status = self._llhttp.get_status_code()  # type: ignore[union-attr]
        if 100 <= status < 200 and status != 101:
            return  # 100 Continue, 103 Early Hints: skipped
        fields = self._fields
        encodings = [value for name, value in fields if name == b"transfer-encoding"]
        if status < 100 or (status == 101 and not self._upgrade):
            self._invalid = f"status {status}"
        elif encodings and (len(encodings) > 1 or encodings[0].lower() != b"chunked"):
            self._invalid = "a Transfer-Encoding other than chunked"
        self.status, self.headers, self.head_done = status, tuple(fields), True
        bodiless = self._method == b"HEAD" or status in (204, 304)
        lengths = [value for name, value in fields if name == b"content-length"]
        self._until_close = not bodiless and not encodings and not lengths
        if not bodiless and not encodings and len(lengths) == 1 and status != 101:  # (llhttp checked its digits)
            self._length_left = int(lengths[0])
        llhttp = self._llhttp
        self._keep_alive = llhttp.should_keep_alive() and llhttp.get_http_version() == "1.1"  # type: ignore[union-attr]
        if self._method == b"HEAD":
            self._complete()

    def on_body(self, data: bytes) -> None:
        if self.done:
            self._extra = True
        else:
            self._body.append(data)
            if self._length_left:  # (a Content-Length body)
                self._length_left -= len(data)

    def on_message_complete(self) -> None:
        if self.head_done and not self.done:
            self._complete()

    def _complete(self) -> None:
        self.done = True
        self.reusable = self._keep_alive and self.status != 101
