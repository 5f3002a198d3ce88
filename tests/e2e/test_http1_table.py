"""The HTTP/1.1 parser's boundary, as a table of raw requests on raw TLS sockets to a real
edge, tunnel and recording origin: every shape the edge refuses (status, `Connection:
close`, nothing at the origin) and the nearby shapes it forwards. Written against the
h11-based parser and kept unchanged when llhttp (httptools) replaced it, so the new
parser refuses every shape the old one refused, and forwards what it forwarded."""

from __future__ import annotations

import pytest

from tests.e2e.test_hardening import HOST, OTHER, exchange, record  # noqa: F401 (the fixture)

FORWARDED = 200  # the request reached the origin (which answers 200)
UNREAD = None  # (after a first request) the edge closed the connection without reading it
TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CONTROLS = [byte for byte in range(0x20) if byte != 0x09] + [0x7F]  # every control but HTAB


def get(marker: str, fields: bytes = b"", line: bytes | None = None) -> bytes:
    line = line if line is not None else b"GET /t/" + marker.encode() + b" HTTP/1.1"
    return line + b"\r\nHost: {host}\r\nX-Marker: /t/" + marker.encode() + b"\r\n" + fields + b"Connection: close\r\n\r\n"


def chunked(marker: str, body: bytes, fields: bytes = b"") -> bytes:
    return (
        b"POST /t/" + marker.encode() + b" HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
        + fields + b"Connection: close\r\n\r\n" + body
    )


def post(marker: str, fields: bytes, body: bytes = b"") -> bytes:
    return b"POST /t/" + marker.encode() + b" HTTP/1.1\r\nHost: {host}\r\n" + fields + b"Connection: close\r\n\r\n" + body


def line_of(marker: str, length: int) -> bytes:
    """A request line of exactly `length` bytes (without its CRLF)."""
    start, end = b"GET /t/" + marker.encode() + b"?", b" HTTP/1.1"
    return start + b"q" * (length - len(start) - len(end)) + end


def ok(marker: str) -> bytes:
    """A valid request before a hostile one on the same connection (pipelined)."""
    return b"GET /ok/" + marker.encode() + b" HTTP/1.1\r\nHost: {host}\r\n\r\n"


CASES: list[tuple[str, bytes, int | None]] = [
    # header values: every control byte but HTAB; obs-text and HTAB pass
    *[(f"value-ctl-{b:02x}", get(f"value-ctl-{b:02x}", b"X-V: a" + bytes([b]) + b"b\r\n"), 400) for b in CONTROLS],
    ("value-obs-text", get("value-obs-text", b"X-V: a\x80\xffb\r\n"), FORWARDED),
    ("value-htab", get("value-htab", b"X-V: a\tb\r\n"), FORWARDED),
    ("value-ows-around", get("value-ows-around", b"X-V: \t a b \t \r\n"), FORWARDED),
    ("value-empty", get("value-empty", b"X-V:\r\nX-W: \r\n"), FORWARDED),
    # header names: every byte that is not a token character (":" ends the name)
    *[
        (f"name-byte-{b:02x}", get(f"name-byte-{b:02x}", b"X" + bytes([b]) + b"Y: v\r\n"), 400)
        for b in range(256) if b not in TCHAR and b != ord(":")
    ],
    ("name-every-tchar", get("name-every-tchar", TCHAR + b": v\r\n"), FORWARDED),
    ("name-tab-before-colon", get("name-tab-before-colon", b"X-V\t: v\r\n"), 400),
    ("name-empty", get("name-empty", b": v\r\n"), 400),
    ("field-no-colon", get("field-no-colon", b"X-V v\r\n"), 400),
    ("field-leading-space", get("field-leading-space", line=b"GET /t/field-leading-space HTTP/1.1\r\n X-A: 1"), 400),
    ("field-leading-tab", get("field-leading-tab", line=b"GET /t/field-leading-tab HTTP/1.1\r\n\tX-A: 1"), 400),
    ("obs-fold-space", get("obs-fold-space", b"X-V: a\r\n b\r\n"), 400),
    ("obs-fold-tab", get("obs-fold-tab", b"X-V: a\r\n\tb\r\n"), 400),
    ("cr-cr-lf", get("cr-cr-lf", b"X-V: a\r\r\n"), 400),
    ("lf-cr", get("lf-cr", b"X-V: a\n\r\n"), 400),
    ("bare-lf-end-of-head", get("bare-lf-end-of-head").replace(b"\r\n\r\n", b"\r\n\n"), 400),
    # request targets: controls, space, DEL and non-ASCII bytes; other visible ASCII passes
    *[
        (f"target-byte-{b:02x}", get(f"target-byte-{b:02x}", line=b"GET /t/target-byte-%02x/a" % b + bytes([b]) + b"b HTTP/1.1"), 400)
        for b in [*range(0x21), 0x7F, 0x80, 0xFF]
    ],
    ("target-visible-ascii", get("target-visible-ascii", line=b'GET /t/target-visible-ascii/"<>{}|\\^`[]?a=b HTTP/1.1'), FORWARDED),
    ("target-fragment", get("target-fragment", line=b"GET /t/target-fragment#frag HTTP/1.1"), FORWARDED),
    ("target-empty", get("target-empty", line=b"GET  HTTP/1.1"), 400),
    ("target-asterisk-get", get("target-asterisk-get", line=b"GET * HTTP/1.1"), 400),
    ("target-absolute-http", get("target-absolute-http", line=b"GET http://{host}/t/target-absolute-http HTTP/1.1"), FORWARDED),
    ("target-absolute-port", get("target-absolute-port", line=b"GET https://{host}:443/t/target-absolute-port HTTP/1.1"), FORWARDED),
    ("target-absolute-fragment", get("target-absolute-fragment", line=b"GET https://{host}/t/target-absolute-fragment#f HTTP/1.1"), 400),
    ("target-absolute-ftp", get("target-absolute-ftp", line=b"GET ftp://{host}/t/target-absolute-ftp HTTP/1.1"), 400),
    # request lines
    ("line-two-spaces-before-target", get("line-two-spaces-before-target", line=b"GET  /t/line-two-spaces-before-target HTTP/1.1"), 400),
    ("line-two-spaces-before-version", get("line-two-spaces-before-version", line=b"GET /t/line-two-spaces-before-version  HTTP/1.1"), 400),
    ("line-tab-separators", get("line-tab-separators", line=b"GET\t/t/line-tab-separators\tHTTP/1.1"), 400),
    ("line-trailing-space", get("line-trailing-space", line=b"GET /t/line-trailing-space HTTP/1.1 "), 400),
    ("line-leading-crlf", b"\r\n" + get("line-leading-crlf"), 400),
    ("line-lower-case-version", get("line-lower-case-version", line=b"GET /t/line-lower-case-version http/1.1"), 400),
    ("line-http-1.2", get("line-http-1.2", line=b"GET /t/line-http-1.2 HTTP/1.2"), 400),
    ("line-http-1.10", get("line-http-1.10", line=b"GET /t/line-http-1.10 HTTP/1.10"), 400),
    ("line-http-01.1", get("line-http-01.1", line=b"GET /t/line-http-01.1 HTTP/01.1"), 400),
    ("line-http-3", get("line-http-3", line=b"GET /t/line-http-3 HTTP/3"), 400),
    ("line-http09", get("line-http09", line=b"GET /t/line-http09"), 400),
    ("line-no-target", get("line-no-target", line=b"GET HTTP/1.1"), 400),
    ("line-empty-method", get("line-empty-method", line=b" /t/line-empty-method HTTP/1.1"), 400),
    ("line-method-not-token", get("line-method-not-token", line=b"GE(T /t/line-method-not-token HTTP/1.1"), 400),
    ("line-bare-cr", get("line-bare-cr", line=b"GET /t/line-bare-cr HTTP/1.1\r"), 400),
    ("line-h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ("method-custom", get("method-custom", line=b"FROB /t/method-custom HTTP/1.1"), FORWARDED),
    ("method-lower-case", get("method-lower-case", line=b"get /t/method-lower-case HTTP/1.1"), FORWARDED),
    ("method-connect-origin-form", get("method-connect-origin-form", line=b"CONNECT /t/method-connect-origin-form HTTP/1.1"), 405),
    ("http10", get("http10", line=b"GET /t/http10 HTTP/1.0"), FORWARDED),
    # Host
    ("host-empty", get("host-empty").replace(b"Host: {host}", b"Host:"), 400),
    ("host-space-inside", get("host-space-inside").replace(b"Host: {host}", b"Host: {host} x"), 400),
    ("host-userinfo", get("host-userinfo").replace(b"Host: {host}", b"Host: user@{host}"), 400),
    ("host-two-ports", get("host-two-ports").replace(b"Host: {host}", b"Host: {host}:443:443"), 400),
    ("host-port-too-long", get("host-port-too-long").replace(b"Host: {host}", b"Host: {host}:123456"), 400),
    ("host-upper-case", get("host-upper-case").replace(b"Host: {host}", b"Host: {HOST}"), FORWARDED),
    ("host-with-port", get("host-with-port").replace(b"Host: {host}", b"Host: {host}:443"), FORWARDED),
    ("host-lower-case-name", get("host-lower-case-name").replace(b"Host: {host}", b"hOST: {host}"), FORWARDED),
    ("host-other-name", get("host-other-name").replace(b"Host: {host}", b"Host: {other}"), 421),
    ("host-second-as-other-case", get("host-second-as-other-case", b"HOST: {host}\r\n"), 400),
    # body framing
    ("cl-empty", post("cl-empty", b"Content-Length:\r\n"), 400),
    ("cl-spaces-only", post("cl-spaces-only", b"Content-Length:   \r\n"), 400),
    ("cl-space-inside", post("cl-space-inside", b"Content-Length: 1 2\r\n", b"a" * 12), 400),
    ("cl-hex", post("cl-hex", b"Content-Length: 0x3\r\n", b"abc"), 400),
    ("cl-19-digits", post("cl-19-digits", b"Content-Length: 1000000000000000000\r\n"), 400),
    ("cl-leading-zeros", post("cl-leading-zeros", b"Content-Length: 003\r\n", b"abc"), FORWARDED),
    ("cl-trailing-space", post("cl-trailing-space", b"Content-Length: 3 \r\n", b"abc"), FORWARDED),
    ("cl-zero", post("cl-zero", b"Content-Length: 0\r\n"), FORWARDED),
    ("cl-and-te-identity", post("cl-and-te-identity", b"Content-Length: 3\r\nTransfer-Encoding: identity\r\n", b"abc"), 400),
    ("te-empty", post("te-empty", b"Transfer-Encoding:\r\n"), 400),
    ("te-identity", post("te-identity", b"Transfer-Encoding: identity\r\n"), 400),
    ("te-chunked-chunked", post("te-chunked-chunked", b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), 400),
    ("te-chunked-gzip", post("te-chunked-gzip", b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"), 400),
    ("te-chunked-param", post("te-chunked-param", b"Transfer-Encoding: chunked;q=1\r\n", b"0\r\n\r\n"), 400),
    ("te-vertical-tab", post("te-vertical-tab", b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"), 400),
    ("te-upper-case", post("te-upper-case", b"Transfer-Encoding: CHUNKED\r\n", b"0\r\n\r\n"), FORWARDED),
    ("te-trailing-space", post("te-trailing-space", b"Transfer-Encoding: chunked \r\n", b"0\r\n\r\n"), FORWARDED),
    # chunked bodies
    ("chunk-size-17-digits", chunked("chunk-size-17-digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-16-digits", chunked("chunk-size-16-digits", b"0000000000000005\r\nhello\r\n0\r\n\r\n"), FORWARDED),
    ("chunk-size-upper-hex", chunked("chunk-size-upper-hex", b"A\r\nhellohello\r\n0\r\n\r\n"), FORWARDED),
    ("chunk-size-empty", chunked("chunk-size-empty", b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-plus", chunked("chunk-size-plus", b"+5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-bare-lf", chunked("chunk-size-bare-lf", b"5\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-bare-cr", chunked("chunk-size-bare-cr", b"5\rhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-tab", chunked("chunk-size-tab", b"5\t\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-data-bare-lf", chunked("chunk-data-bare-lf", b"5\r\nhello\n0\r\n\r\n"), 400),
    ("chunk-data-no-crlf", chunked("chunk-data-no-crlf", b"5\r\nhello0\r\n\r\n"), 400),
    ("chunk-ext-empty-name", chunked("chunk-ext-empty-name", b"5;\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-empty-value", chunked("chunk-ext-empty-value", b"5;a=\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-bad-quote", chunked("chunk-ext-bad-quote", b'5;a="b\r\nhello\r\n0\r\n\r\n'), 400),
    ("chunk-ext-nul", chunked("chunk-ext-nul", b"5;a\x00\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-too-long", chunked("chunk-ext-too-long", b"5;a=" + b"b" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-space-before-semicolon", chunked("chunk-ext-space-before-semicolon", b"5 ;a=b\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-valid", chunked("chunk-ext-valid", b'5;a=b;c="d e";f\r\nhello\r\n0;last\r\n\r\n'), FORWARDED),
    # forwarded by the h11-based parser; llhttp refuses even the whitespace RFC 9112 allows here
    ("chunk-ext-space-after-semicolon", chunked("chunk-ext-space-after-semicolon", b"5;a=b ; f\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-trailer-obs-fold", chunked("chunk-trailer-obs-fold", b"0\r\nX: a\r\n b\r\n\r\n"), 400),
    ("chunk-trailer-bad-name", chunked("chunk-trailer-bad-name", b"0\r\nX Y: a\r\n\r\n"), 400),
    ("chunk-trailer-ctl", chunked("chunk-trailer-ctl", b"0\r\nX: a\x01b\r\n\r\n"), 400),
    ("chunk-trailer-bare-cr", chunked("chunk-trailer-bare-cr", b"0\r\nX: a\rb\r\n\r\n"), 400),
    ("chunk-trailer-too-large", chunked("chunk-trailer-too-large", b"0\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n"), 400),
    ("chunk-trailer-valid", chunked("chunk-trailer-valid", b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), FORWARDED),
    ("chunk-last-bare-lf", chunked("chunk-last-bare-lf", b"5\r\nhello\r\n0\r\n\n"), 400),
    # limits, at and over the boundary
    ("line-8192", get("line-8192", line=line_of("line-8192", 8192)), FORWARDED),
    ("line-8193", get("line-8193", line=line_of("line-8193", 8193)), 414),
    ("fields-100", get("fields-100", b"".join(b"X-%d: v\r\n" % i for i in range(97))), FORWARDED),
    ("fields-101", get("fields-101", b"".join(b"X-%d: v\r\n" % i for i in range(98))), 431),
    ("fields-101-and-obs-fold", get("fields-101-and-obs-fold", b"X-F: a\r\n b\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(97))), 431),
    # pipelined: the valid request is answered, the hostile one after it refused
    ("pipelined-bare-lf", ok("pipelined-bare-lf") + get("pipelined-bare-lf").replace(b"\r\nHost", b"\nHost"), 400),
    ("pipelined-cl-te", ok("pipelined-cl-te") + post("pipelined-cl-te", b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 400),
    ("pipelined-after-body", post("pipelined-after-body", b"Content-Length: 3\r\n", b"abc").replace(b"Connection: close\r\n", b"")
     .replace(b"/t/", b"/ok/") + get("pipelined-after-body", b"X-F: a\r\n b\r\n"), 400),
    ("pipelined-after-chunked", chunked("pipelined-after-chunked", b"5\r\nhello\r\n0\r\n\r\n").replace(b"Connection: close\r\n", b"")
     .replace(b"/t/", b"/ok/") + get("pipelined-after-chunked", b"X-V: a\x00\r\n"), 400),
    # pipelined after a request that ends the connection: never read
    ("after-connection-close", get("after-connection-close").replace(b"/t/", b"/ok/") + get("after-connection-close"), UNREAD),
    ("after-http10", b"GET /ok/after-http10 HTTP/1.0\r\nHost: {host}\r\n\r\n" + get("after-http10"), UNREAD),
    ("after-http10-keep-alive", b"GET /ok/after-http10-keep-alive HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n"
     + get("after-http10-keep-alive"), UNREAD),
]


def answers(received: bytes) -> list[int]:
    """The status of each response in `received`, in order."""
    return [int(part[:3]) for part in received.split(b"HTTP/1.1 ")[1:] if part[:3].isdigit()]


@pytest.mark.parametrize("case, raw, expected", CASES, ids=[case for case, _, _ in CASES])
def test_each_shape_is_refused_or_forwarded_as_before(edge, record, case, raw, expected):  # noqa: F811 (the imported fixture)
    raw = raw.replace(b"{host}", HOST.encode()).replace(b"{HOST}", HOST.upper().encode()).replace(b"{other}", OTHER.encode())
    answer = exchange(edge, raw)
    pipelined = raw.startswith(b"GET /ok/") or raw.startswith(b"POST /ok/")
    statuses = answers(answer)
    assert statuses == ([200] if pipelined else []) + ([] if expected is UNREAD else [expected]), answer[:300]
    assert b"connection: close" in answer.lower()
    arrived = record.matching(f"/t/{case}")
    if expected == FORWARDED:
        assert arrived and arrived[-1].complete
    else:  # a body's framing may fail after its head went on (a long body): never complete
        assert not (arrived if not case.startswith("chunk-") else [r for r in arrived if r.complete])
    if pipelined:
        assert record.matching(f"/ok/{case}")

