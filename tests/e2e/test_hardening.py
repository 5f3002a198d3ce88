"""Acceptance 1 of the hardening work: malformed and hostile HTTP/1.1 requests over raw TLS
sockets to a real edge, tunnel and recording origin. Each gets the right 4xx or a closed
connection, and the origin's record shows that nothing reached it that should not."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.e2e.conftest import ZONE, wait_until
from tests.e2e.recording_origin import start_recording_origin
from tests.e2e.tunnels import run_tunnel, tls_socket

HOST = f"hard.{ZONE}"
OTHER = f"hard-other.{ZONE}"

# (id, raw request, expected status). `{host}` is HOST; every request names
# /hostile/<id>, and any request smuggled inside another names /smuggled.
CASES = [
    ("cl-and-te", b"POST /hostile/cl-and-te HTTP/1.1\r\nHost: {host}\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
    ("te-and-cl", b"POST /hostile/te-and-cl HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n0\r\n\r\n", 400),
    ("cl-twice-same", b"POST /hostile/cl-twice-same HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("cl-twice-different", b"POST /hostile/cl-twice-different HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabcGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
    ("cl-list", b"POST /hostile/cl-list HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    ("cl-negative", b"POST /hostile/cl-negative HTTP/1.1\r\nHost: {host}\r\nContent-Length: -1\r\n\r\n", 400),
    ("cl-plus", b"POST /hostile/cl-plus HTTP/1.1\r\nHost: {host}\r\nContent-Length: +3\r\n\r\nabc", 400),
    ("cl-huge", b"POST /hostile/cl-huge HTTP/1.1\r\nHost: {host}\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
    ("te-list", b"POST /hostile/te-list HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-unknown", b"POST /hostile/te-unknown HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    ("te-twice", b"POST /hostile/te-twice HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400),
    ("te-space-before-colon", b"POST /hostile/te-space-before-colon HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-in-http10", b"POST /hostile/te-in-http10 HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("chunk-size-not-hex", b"POST /hostile/chunk-size-not-hex HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-negative", b"POST /hostile/chunk-size-negative HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-0x", b"POST /hostile/chunk-size-0x HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-overflow", b"POST /hostile/chunk-size-overflow HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n1" + b"0" * 20 + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-data-overrun", b"POST /hostile/chunk-data-overrun HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-ext-bare-lf", b"POST /hostile/chunk-ext-bare-lf HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-ext-not-token", b"POST /hostile/chunk-ext-not-token HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5;a b\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-size-space", b"POST /hostile/chunk-size-space HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 400),
    ("chunk-trailer-bare-lf", b"POST /hostile/chunk-trailer-bare-lf HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
    ("bare-lf", b"GET /hostile/bare-lf HTTP/1.1\nHost: {host}\n\n", 400),
    ("bare-lf-in-field", b"GET /hostile/bare-lf-in-field HTTP/1.1\r\nHost: {host}\r\nX-A: 1\nX-B: 2\r\n\r\n", 400),
    ("bare-cr", b"GET /hostile/bare-cr HTTP/1.1\r\nHost: {host}\r\nX-A: 1\rX-B: 2\r\n\r\n", 400),
    ("obs-fold", b"GET /hostile/obs-fold HTTP/1.1\r\nHost: {host}\r\nX-Folded: a\r\n b\r\n\r\n", 400),
    ("nul-in-value", b"GET /hostile/nul-in-value HTTP/1.1\r\nHost: {host}\r\nX-Nul: a\x00b\r\n\r\n", 400),
    ("ctl-in-value", b"GET /hostile/ctl-in-value HTTP/1.1\r\nHost: {host}\r\nX-Esc: a\x1bb\r\n\r\n", 400),
    ("space-in-name", b"GET /hostile/space-in-name HTTP/1.1\r\nHost: {host}\r\nBad Name: x\r\n\r\n", 400),
    ("non-token-name", b"GET /hostile/non-token-name HTTP/1.1\r\nHost: {host}\r\nX(y): z\r\n\r\n", 400),
    ("empty-name", b"GET /hostile/empty-name HTTP/1.1\r\nHost: {host}\r\n: z\r\n\r\n", 400),
    ("no-host", b"GET /hostile/no-host HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    ("two-hosts", b"GET /hostile/two-hosts HTTP/1.1\r\nHost: {host}\r\nHost: {other}\r\n\r\n", 400),
    ("host-with-path", b"GET /hostile/host-with-path HTTP/1.1\r\nHost: {host}/x\r\n\r\n", 400),
    ("host-sni-mismatch", b"GET /hostile/host-sni-mismatch HTTP/1.1\r\nHost: {other}\r\n\r\n", 421),
    ("absolute-form-other-host", b"GET https://{other}/hostile/absolute-form-other-host HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
    ("absolute-form-userinfo", b"GET https://evil@{host}/hostile/absolute-form-userinfo HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
    ("connect", b"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}\r\nX-Marker: /hostile/connect\r\n\r\n", 405),
    ("authority-form", b"GET {host}:443 HTTP/1.1\r\nHost: {host}\r\nX-Marker: /hostile/authority-form\r\n\r\n", 400),
    ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: {host}\r\nX-Marker: /hostile/asterisk-form\r\n\r\n", 400),
    ("http09", b"GET /hostile/http09\r\n\r\n", 400),
    ("http2-version", b"GET /hostile/http2-version HTTP/2.0\r\nHost: {host}\r\n\r\n", 400),
    ("leading-space", b" GET /hostile/leading-space HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
    ("too-many-fields", b"GET /hostile/too-many-fields HTTP/1.1\r\nHost: {host}\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
    ("head-too-large", b"GET /hostile/head-too-large HTTP/1.1\r\nHost: {host}\r\n" + b"X-Big: " + b"a" * 8000 + b"\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 8000) for i in range(8)) + b"\r\n", 431),
    ("request-line-too-long", b"GET /hostile/request-line-too-long?" + b"q" * 9000 + b" HTTP/1.1\r\nHost: {host}\r\n\r\n", 414),
    ("pipelined-after-refusal", b"GET /hostile/pipelined-after-refusal HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n", 400),
]


@pytest.fixture(scope="module")
def record(edge):
    server, record = start_recording_origin()
    service = f"http://127.0.0.1:{server.server_address[1]}"
    run_tunnel(edge, "hardening", [("hard", service), ("hard-other", service)])
    yield record
    server.shutdown()


def exchange(edge, raw: bytes, sni: str = HOST) -> bytes:
    """Send `raw` on a fresh TLS connection; everything the edge answered until it closed."""
    received = b""
    with tls_socket(edge, sni) as sock:
        sock.settimeout(10)
        sock.sendall(raw)
        try:
            while data := sock.recv(65536):
                received += data
        except (ConnectionResetError, socket.timeout):
            pass
    return received


def status_of(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


@pytest.mark.parametrize("case, raw, expected", CASES, ids=[case for case, _, _ in CASES])
def test_hostile_request_is_refused_and_never_reaches_the_origin(edge, record, case, raw, expected):
    answer = exchange(edge, raw.replace(b"{host}", HOST.encode()).replace(b"{other}", OTHER.encode()))
    assert status_of(answer) == expected, answer[:300]
    assert b"connection: close" in answer.lower()
    assert not record.matching(f"/hostile/{case}")
    assert not record.matching("/smuggled")


def test_there_are_at_least_25_hostile_cases():
    assert len(CASES) >= 25


def test_absolute_form_for_the_host_itself_reaches_the_origin_in_origin_form(edge, record):
    raw = f"GET https://{HOST}/fine/absolute?x=1 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    assert status_of(exchange(edge, raw)) == 200
    [received] = record.matching("/fine/absolute")
    assert received.target == "/fine/absolute?x=1"


def test_spoofed_and_hop_by_hop_headers_are_stripped(edge, record):
    raw = (
        f"GET /fine/strip HTTP/1.1\r\nHost: {HOST}\r\nConnection: close, X-Secret\r\nX-Secret: hop\r\n"
        "Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\nTE: gzip\r\nUpgrade: h2c\r\n"
        "X-Forwarded-For: 6.6.6.6\r\nBurrow-Connecting-IP: 6.6.6.6\r\nburrow_connecting_ip: 6.6.6.6\r\n"
        "X-Forwarded_For: 6.6.6.6\r\nX-Kept: yes\r\n\r\n"
    ).encode()
    assert status_of(exchange(edge, raw)) == 200
    [received] = record.matching("/fine/strip")
    names = {name.lower() for name, _ in received.headers}
    assert not names & {"x-secret", "keep-alive", "proxy-authorization", "te", "upgrade", "burrow_connecting_ip", "x-forwarded_for"}
    assert received.header("x-forwarded-for") == ["127.0.0.1"]
    assert received.header("burrow-connecting-ip") == ["127.0.0.1"]
    assert received.header("x-kept") == ["yes"]
    assert "6.6.6.6" not in str(received.headers)


def test_a_valid_chunked_body_still_arrives_whole(edge, record):
    raw = (
        f"POST /fine/chunked HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    ).encode()
    assert status_of(exchange(edge, raw)) == 200
    [received] = record.matching("/fine/chunked")
    assert received.complete and received.body == b"hello world"


def test_bad_chunk_framing_after_the_request_was_forwarded_gets_400_and_no_complete_body(edge, record):
    received = b""
    with tls_socket(edge, HOST) as sock:
        sock.settimeout(10)
        sock.sendall(f"POST /hostile/late-chunk HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".encode())
        wait_until(lambda: record.matching("/hostile/late-chunk"), 10, "the request at the origin")
        sock.sendall(b"0x5\r\nworld\r\n0\r\n\r\n")
        while data := sock.recv(65536):
            received += data
    assert status_of(received) == 400 and b"connection: close" in received.lower()
    assert not [r for r in record.matching("/hostile/late-chunk") if r.complete]


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--header-timeout", "abc", "invalid duration 'abc'"),
        ("--keepalive-timeout", "0s", "--keepalive-timeout must be a positive duration"),
        ("--hsts-max-age", "-1", "invalid duration"),
    ],
)
def test_bad_limit_flags_are_one_clear_line(edge, flag, value, message):
    result = edge.cli("burrow-edge", "serve", "--home", edge.home, flag, value, check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def handshake(edge, port: int, *, version: ssl.TLSVersion, ciphers: str | None = None, alpn: str = "http/1.1") -> str | None:
    """The negotiated TLS version, or None if the edge refused the handshake."""
    context = ssl.create_default_context(cafile=str(edge.ca))
    context.minimum_version = context.maximum_version = version
    if ciphers:
        context.set_ciphers(ciphers)
    context.set_alpn_protocols([alpn])
    try:
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=HOST) as sock:
            return sock.version()
    except (ssl.SSLError, ConnectionResetError):
        return None


def test_tls_versions_and_suites_on_every_listener(edge):
    assert handshake(edge, edge.https_port, version=ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(edge, edge.https_port, version=ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    cbc = "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA"
    assert handshake(edge, edge.https_port, version=ssl.TLSVersion.TLSv1_2, ciphers=cbc) is None
    assert handshake(edge, edge.tunnel_port, version=ssl.TLSVersion.TLSv1_2, alpn="burrow-tunnel/1") is None
