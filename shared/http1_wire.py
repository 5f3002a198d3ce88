"""HTTP/1.1 bytes Burrow writes (sans-IO): checked header field lines (no CR, LF or other
control byte can split them), body framing, reason phrases. The edge writes responses
with them, the connector requests."""

from __future__ import annotations

import string
from http import HTTPStatus

from shared.events import Headers

_TCHAR = b"!#$%&'*+-.^_`|~" + string.digits.encode() + string.ascii_letters.encode()
_VISIBLE = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))  # all but the controls
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
LAST_CHUNK = b"0\r\n\r\n"


def field_lines(headers: Headers) -> bytes:
    """`name: value` CRLF for each field; ValueError for a name that is not a token or a
    value with a control character (CR, LF, NUL, …)."""
    block = b"".join([name + b": " + value + b"\r\n" for name, value in headers])
    if (
        block.translate(None, _VISIBLE) != b"\r\n" * len(headers)  # no control but the CRLFs
        or b"".join([name for name, _ in headers]).translate(None, _TCHAR)
        or block.startswith(b": ") or b"\n: " in block  # an empty name
    ):
        raise ValueError(f"invalid header field in {block[:200]!r}")
    return block


class BodyFraming:
    """Frames one outgoing body: exactly `length` bytes, else chunked, else as it comes (to
    the connection's close). ValueError for a body longer or shorter than its length."""

    def __init__(self, length: int | None, chunked: bool = False) -> None:
        self.left = length
        self.chunked = chunked

    def body(self, data: bytes) -> bytes:
        if self.left is not None:
            if len(data) > self.left:
                raise ValueError("body longer than its Content-Length")
            self.left -= len(data)
            return data
        return b"%x\r\n%b\r\n" % (len(data), data) if self.chunked and data else data

    def end(self) -> bytes:
        if self.left:
            raise ValueError("body shorter than its Content-Length")
        return LAST_CHUNK if self.chunked else b""


def reason(status: int) -> bytes:
    return _REASONS.get(status, b"")
