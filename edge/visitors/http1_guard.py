"""Strict checks on a raw HTTP/1.1 request head (sans-IO), around llhttp's parse.

`HeadScanner` delimits the head and refuses early what can no longer become valid;
`check_request_line` reads the request line (llhttp knows a fixed list of methods and
accepts shapes two parsers read differently: HTTP/0.9, doubled spaces); `check_fields`
checks what llhttp parsed: one Host, one unambiguous body length, the target's form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from edge.dns.zone import normalize_host

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/1\.([01])")
BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # controls other than HTAB
HOST = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
DIGITS = re.compile(rb"[0-9]{1,18}")


class Refused(Exception):
    """The request is refused with `status`; the connection is closed after the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class HeadLimits:
    max_request_line: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    max_header_fields: int = 100


class CheckedHead(NamedTuple):
    """What the checks learnt: the method, the Host, the origin-form target to forward, the
    header fields (lower-case names, values without surrounding spaces and tabs, in order)
    and the body's framing."""

    host: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    method: bytes = b"GET"
    http10: bool = False
    length: int | None = 0  # the body's Content-Length; None for a chunked body


class HeadScanner:
    """Collects a request head as it arrives, checking each new piece once (a head dripped
    a byte at a time costs linear, not quadratic, time)."""

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self.buffer = bytearray()
        self._line_end: int | None = None

    def feed(self, data: bytes) -> bytes | None:
        """Add `data`; the complete head once its blank line arrived (checked with
        `check_request_line` and `check_fields` by the caller), else None. Raise `Refused`
        for a head that can no longer become valid."""
        start = len(self.buffer)
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n", max(0, start - 3))
        stop = len(self.buffer) if end == -1 else end + 4  # bytes after the head are not checked
        if self._line_end is None and (found := self.buffer.find(b"\r\n", max(0, start - 1), stop)) != -1:
            self._line_end = found
        if (self._line_end if self._line_end is not None else stop) > self.limits.max_request_line:
            raise Refused(414, f"request line longer than {self.limits.max_request_line} bytes")
        if stop > self.limits.max_header_bytes:
            raise Refused(431, f"request head larger than {self.limits.max_header_bytes} bytes")
        if self.buffer.find(b"\x00", start, stop) != -1:
            raise Refused(400, "NUL byte in the request head")
        if self.buffer.count(b"\n", start, stop) != self.buffer.count(b"\r\n", max(0, start - 1), stop):
            raise Refused(400, "bare LF line ending")
        return None if end == -1 else bytes(self.buffer[:stop])


def check_request_line(head: bytes, limits: HeadLimits) -> tuple[bytes, bytes, bool]:
    """(method, target, HTTP/1.0?) of a head exactly as `HeadScanner.feed` returned it (its
    byte checks passed); also counts its field lines, which llhttp does not limit."""
    if head.count(b"\r") != head.count(b"\r\n"):  # (the head ends with CRLF CRLF)
        raise Refused(400, "bare CR in the request head")
    match = REQUEST_LINE.fullmatch(head, 0, head.find(b"\r\n"))
    if match is None:
        raise Refused(400, "malformed request line")
    if head.count(b"\r\n") - 2 > limits.max_header_fields:
        raise Refused(431, f"more than {limits.max_header_fields} header fields")
    method, target, minor = match.groups()
    return method, target, minor == b"0"


def check_fields(method: bytes, target: bytes, http10: bool, fields: tuple[tuple[bytes, bytes], ...]) -> CheckedHead:
    """The checks on a request's parsed fields: Host, framing, CONNECT, the target's form."""
    hosts = [value for name, value in fields if name == b"host"]
    if not hosts:
        raise Refused(400, "no Host header")
    if len(hosts) > 1:
        raise Refused(400, "more than one Host header")
    host = hosts[0]
    if not HOST.fullmatch(host):
        raise Refused(400, "invalid Host header")
    length = _check_framing(fields, http10)
    if method == b"CONNECT":
        raise Refused(405, "CONNECT is not supported")
    return CheckedHead(host, _origin_form(target, host), fields, method, http10, length)


def field_line(line: bytes) -> tuple[bytes, bytes]:
    """One header (or trailer) field line without its CRLF: (lower-case name, trimmed value)."""
    if line[:1] in (b" ", b"\t"):
        raise Refused(400, "obsolete line folding")
    name, colon, value = line.partition(b":")
    if not colon or not TOKEN.fullmatch(name):
        raise Refused(400, "invalid header name")
    value = value.strip(b" \t")
    if BAD_VALUE_BYTE.search(value):
        raise Refused(400, "control character in a header value")
    return name.lower(), value


def _check_framing(fields: tuple[tuple[bytes, bytes], ...], http10: bool) -> int | None:
    """One unambiguous body length (RFC 9112 §6.3), refusing every shape two parsers could
    read differently: the Content-Length, 0 for none, None for chunked."""
    lengths = [value for name, value in fields if name == b"content-length"]
    encodings = [value for name, value in fields if name == b"transfer-encoding"]
    if lengths and encodings:
        raise Refused(400, "both Content-Length and Transfer-Encoding")
    if len(lengths) > 1:
        raise Refused(400, "more than one Content-Length")
    if lengths and not DIGITS.fullmatch(lengths[0]):
        raise Refused(400, "invalid Content-Length")
    if encodings:
        if http10:
            raise Refused(400, "Transfer-Encoding in an HTTP/1.0 request")
        if len(encodings) > 1 or encodings[0].lower() != b"chunked":
            raise Refused(400, "Transfer-Encoding other than a single chunked")
        return None
    return int(lengths[0]) if lengths else 0


def _origin_form(target: bytes, host: bytes) -> bytes:
    """The path-and-query to forward: origin-form as is; absolute-form only for the Host's
    own authority; asterisk- and authority-form refused."""
    if target.startswith(b"/"):
        return target
    if target.lower().startswith((b"http://", b"https://")):
        url = urlsplit(target.decode("ascii"))
        same_host = normalize_host(url.netloc) == normalize_host(host.decode("ascii"))
        if not same_host or url.username is not None or url.fragment:
            raise Refused(400, "absolute-form target for another host than Host")
        return (url.path or "/").encode() + (b"?" + url.query.encode() if url.query else b"")
    raise Refused(400, "unsupported request target form")
