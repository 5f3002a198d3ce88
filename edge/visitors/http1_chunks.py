"""Strict chunked framing of an HTTP/1.1 request body, checked beside llhttp (sans-IO).

`ChunkScanner` sees every body byte llhttp decodes, before llhttp does, finds where the
body ends (llhttp would read on into a pipelined request) and refuses (400, connection
closed) whatever falls outside RFC 9112 §7.1 or the edge's limits, which llhttp does not
have (the size's digits, the chunk line's length, the trailer section's size):

    chunked-body = *chunk last-chunk trailer-section CRLF
    chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    chunk-ext    = *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )
"""

from __future__ import annotations

import re

from edge.visitors.http1_guard import Refused, field_line

MAX_CHUNK_LINE = 4096  # a chunk-size line, extensions included
MAX_SIZE_DIGITS = 16  # 64 bits
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
CHUNK_LINE = re.compile(
    rb"(?P<size>[0-9A-Fa-f]{1,%d})(?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*" % (MAX_SIZE_DIGITS, _TOKEN, _TOKEN, _QUOTED)
)

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkScanner:
    """Follows one chunked body through the bytes that arrive after its head.

    `feed` raises `Refused` at the first byte that breaks the grammar; bytes after the
    body's end (a pipelined request) are not looked at.
    """

    def __init__(self, max_trailer_bytes: int) -> None:
        self.max_trailer_bytes = max_trailer_bytes
        self._state = _SIZE
        self._line = bytearray()  # the line being collected (size line or trailer field)
        self._left = 0  # chunk-data bytes still to come, or CRLF bytes after them
        self._trailer_bytes = 0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> int:
        """Check `data`; return how many of its bytes belong to the body."""
        position, size = 0, len(data)
        while position < size and self._state != _DONE:
            if self._state == _DATA:
                step = min(self._left, size - position)
                self._left -= step
                position += step
                if not self._left:
                    self._state, self._left = _DATA_END, 2
            elif self._state == _DATA_END:
                if data[position] != b"\r\n"[2 - self._left]:
                    raise Refused(400, "chunk data longer than its size")
                self._left -= 1
                position += 1
                if not self._left:
                    self._state = _SIZE
            else:
                position = self._take_line(data, position)
        return position

    def _take_line(self, data: bytes, position: int) -> int:
        """Collect a line up to its LF; on a whole one, act on it. Returns the new position."""
        end = data.find(b"\n", position)
        stop = len(data) if end == -1 else end + 1
        self._line += data[position:stop]
        limit = MAX_CHUNK_LINE if self._state == _SIZE else self.max_trailer_bytes - self._trailer_bytes
        if len(self._line) > limit:
            raise Refused(400, "chunk-size line too long" if self._state == _SIZE else "chunked trailer section too large")
        if end != -1:
            line, self._line = bytes(self._line), bytearray()
            if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
                raise Refused(400, "bare LF or CR in chunked framing")
            (self._size_line if self._state == _SIZE else self._trailer_line)(line[:-2])
        return stop

    def _size_line(self, line: bytes) -> None:
        match = CHUNK_LINE.fullmatch(line)
        if match is None:
            raise Refused(400, "malformed chunk-size line")
        self._left = int(match["size"], 16)
        self._state = _DATA if self._left else _TRAILER

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self._state = _DONE
            return
        self._trailer_bytes += len(line) + 2
        field_line(line)
