"""A visitor connection's bytes → requests, one at a time (sans-IO, llhttp via httptools).

`HeadScanner` delimits each head, `check_request_line` reads its request line, llhttp
parses its fields (behind a fixed request line: llhttp knows only a fixed list of
methods) and `check_fields` checks them. A body is cut at its Content-Length, or decoded
by llhttp with `ChunkScanner` beside it. Bytes after a request wait for the next one:
neither parser reads a pipelined request early. llhttp's lenient flags stay off: it
refuses bare CR or LF, obs-fold, non-token names, controls in values, Content-Length with
Transfer-Encoding, and bad chunk sizes and extensions (even the whitespace RFC 9112
allows around `;` and `=`).
"""

from __future__ import annotations

import httptools

from edge.visitors.http1_chunks import ChunkScanner
from edge.visitors.http1_guard import CheckedHead, HeadLimits, HeadScanner, Refused, check_fields, check_request_line

_LINE = b"GET / HTTP/1.1"  # the request line llhttp sees
_CHUNKED_HEAD = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"  # primes a body decoder


class RequestParser:
    """Feed it what the visitor sends; take each request's head, then its body."""

    def __init__(self, limits: HeadLimits, max_trailer_bytes: int) -> None:
        self.limits = limits
        self.max_trailer_bytes = max_trailer_bytes
        self.head: CheckedHead | None = None  # the current request's, once complete
        self.body_done = False
        self.after = b""  # bytes after the current request, not looked at yet
        self._scanner = HeadScanner(limits)
        self._fields = _Fields()
        self._llhttp: httptools.HttpRequestParser | None = None  # kept while it has no body to read
        self._body: list[bytes] = []
        self._left = 0  # Content-Length bytes still to come
        self._chunks: _ChunkedBody | None = None

    @property
    def started(self) -> bool:
        """Some bytes of the next head arrived."""
        return bool(self._scanner.buffer)

    def feed(self, received: bytes | bytearray | memoryview) -> None:
        """Take bytes from the visitor; `Refused` for a bad head or body framing."""
        data = received if type(received) is bytes else bytes(received)
        if self.head is None:
            if (head := self._scanner.feed(data)) is None:
                return
            self.head = self._parse(head)
            buffered = self._scanner.buffer
            data = bytes(buffered[len(head):]) if len(buffered) > len(head) else b""
            if self.head.length is None:
                self._chunks = _ChunkedBody(self.max_trailer_bytes, self._body)
            self._left = self.head.length or 0
            self.body_done = self.head.length == 0
        if data and not self.body_done:
            data = self._take_body(data)
        if data:
            self.after += data

    def take_body(self) -> bytes | None:
        """The body bytes received and not taken yet; b"" once it ended; None: more to come."""
        if body := self._body:
            data = body[0] if len(body) == 1 else b"".join(body)
            body.clear()
            return data
        return b"" if self.body_done else None

    def next_request(self) -> None:
        """The current request is done with: go on with the bytes after it."""
        after, self.after = self.after, b""
        self.head, self.body_done, self._chunks = None, False, None
        self._body.clear()
        self._scanner = HeadScanner(self.limits)
        if after:
            self.feed(after)

    def _parse(self, head: bytes) -> CheckedHead:
        method, target, http10 = check_request_line(head, self.limits)
        llhttp = self._llhttp or httptools.HttpRequestParser(self._fields)
        self._fields.fields = []
        upgrade = False
        try:
            llhttp.feed_data(_LINE + head[head.find(b"\r\n"):])
        except httptools.HttpParserUpgrade:
            upgrade = True  # llhttp stops reading: a fresh parser for the next head
        except httptools.HttpParserError as exc:
            raise Refused(400, f"malformed header field: {exc}") from None
        checked = check_fields(method, target, http10, tuple(self._fields.fields))
        self._llhttp = llhttp if checked.length == 0 and not upgrade else None
        return checked

    def _take_body(self, data: bytes) -> bytes:
        """Add the body's part of `data`; return the bytes after the body."""
        if self._chunks is not None:
            used = self._chunks.feed(data)
            self.body_done = self._chunks.done
        else:
            used = min(self._left, len(data))
            self._body.append(data if used == len(data) else data[:used])
            self._left -= used
            self.body_done = not self._left
        return data[used:] if used < len(data) else b""


class _Fields:
    """llhttp's callback for a head's fields: lower-case names, values without the trailing
    spaces and tabs (llhttp strips only the leading ones)."""

    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name.lower(), value.rstrip(b" \t")))


class _ChunkedBody:
    """One chunked body: `ChunkScanner` checks it and finds its end, llhttp decodes it."""

    def __init__(self, max_trailer_bytes: int, pieces: list[bytes]) -> None:
        self.scanner = ChunkScanner(max_trailer_bytes)
        self.decoded = _Decoded(pieces)
        self._llhttp = httptools.HttpRequestParser(self.decoded)
        self._llhttp.feed_data(_CHUNKED_HEAD)

    @property
    def done(self) -> bool:
        return self.decoded.done

    def feed(self, data: bytes) -> int:
        """Decode the body's part of `data` into `pieces`; return its length."""
        used = self.scanner.feed(data)
        try:
            self._llhttp.feed_data(data if used == len(data) else data[:used])
        except httptools.HttpParserError as exc:
            raise Refused(400, f"malformed chunked body: {exc}") from None
        if self.scanner.done != self.decoded.done:  # (both parsers are strict: they agree)
            raise Refused(400, "malformed chunked body")
        return used


class _Decoded:
    """llhttp's callbacks for a body."""

    __slots__ = ("pieces", "done")

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.done = False

    def on_body(self, data: bytes) -> None:
        self.pieces.append(data)

    def on_message_complete(self) -> None:
        self.done = True
