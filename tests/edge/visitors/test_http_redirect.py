"""The plain-HTTP listener: per-request choice between proxy (exempt hostnames), ACME
HTTP-01 answer and redirect, over real loopback sockets; the `http-redirect-exempt` key."""

from __future__ import annotations

import pytest
import trio

from edge.certs.challenges import Challenges
from edge.visitors.http1 import Http1Limits
from edge.visitors.http_redirect import HttpRedirect, is_exempt
from shared.edge_config import load_edge_config, write_edge_config
from shared.errors import ConfigError
from shared.events import ResponseHead

EXEMPT = ("plain.example.test", "*.open.example.test")
SERVED = {"app.example.test", "x.open.example.test"}  # the hostnames the edge routes


def test_exempt_matches_names_and_one_label_wildcards():
    assert is_exempt("plain.example.test", EXEMPT)
    assert is_exempt("a.open.example.test", EXEMPT)
    assert not is_exempt("a.b.open.example.test", EXEMPT)
    assert not is_exempt("open.example.test", EXEMPT)
    assert not is_exempt("app.example.test", EXEMPT)
    assert not is_exempt("test", EXEMPT)


async def start(nursery, **kwargs) -> tuple[HttpRedirect, int, list]:
    """A listener whose proxy answers `proxied <scheme>` and records each request head."""
    seen = []

    async def proxy(exchange) -> None:
        seen.append(exchange.head)
        body = b"proxied " + exchange.head.scheme
        await exchange.send_response(ResponseHead(200, ((b"content-length", b"%d" % len(body)),)))
        await exchange.send_body(body)
        await exchange.end()

    challenges = Challenges()
    redirect = HttpRedirect(challenges, 8443, serves=SERVED.__contains__, proxy=proxy, exempt=EXEMPT, **kwargs)
    _host, port = await nursery.start(redirect.serve, ("127.0.0.1", 0))
    return redirect, port, seen


async def exchange(stream: trio.SocketStream, request: bytes) -> bytes:
    """Send `request`; the response read until its body (content-length) is complete."""
    await stream.send_all(request)
    data = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed after {data!r}"
            data += chunk
    return data


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def get(host: str, path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


async def test_each_request_is_proxied_answered_or_redirected_by_its_host(nursery):
    redirect, port, seen = await start(nursery, api_hosts=frozenset({"x.open.example.test"}))
    redirect.challenges.http["tok"] = "tok.thumbprint"
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:  # one kept-alive connection: the choice is made per request
        response = await exchange(stream, get("a.open.example.test:80", "/p?q=1"))
        assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"proxied http")
        assert seen[-1].target == b"/p?q=1" and seen[-1].scheme == b"http"
        response = await exchange(stream, get("plain.example.test", "/.well-known/acme-challenge/tok"))
        assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"tok.thumbprint")
        response = await exchange(stream, get("app.example.test", "/x?y=2"))
        assert response.startswith(b"HTTP/1.1 308 ")
        assert b"location: https://app.example.test:8443/x?y=2\r\n" in response.lower()
        response = await exchange(stream, get("x.open.example.test"))  # an API host is never proxied in plain text
        assert response.startswith(b"HTTP/1.1 308 ")
        response = await exchange(stream, get("elsewhere.example.org", "/x"))  # not served here: no redirect
        assert response.startswith(b"HTTP/1.1 404 ") and b"location" not in response.lower()
        await stream.send_all(b"HEAD /h HTTP/1.1\r\nHost: app.example.test\r\n\r\n" + get("app.example.test", "/after-head"))
        response = b""
        with trio.fail_after(5):  # HEAD: a head only; the next response follows at once
            while not response.endswith(b"use HTTPS\n"):
                response += await stream.receive_some(65536)
        assert response.startswith(b"HTTP/1.1 308 ") and response.count(b"HTTP/1.1 308 ") == 2
        assert response.endswith(b"/after-head\r\ncontent-type: text/plain\r\ncontent-length: 10\r\n\r\nuse HTTPS\n")
    assert len(seen) == 1


async def test_head_limits_and_connections_per_ip_apply(nursery):
    limits = Http1Limits(max_header_fields=5)
    _redirect, port, seen = await start(nursery, limits=limits, max_connections_per_ip=1)
    first = await trio.open_tcp_stream("127.0.0.1", port)
    async with first:
        fields = "".join(f"X-{i}: v\r\n" for i in range(10))
        response = await exchange(first, f"GET / HTTP/1.1\r\nHost: plain.example.test\r\n{fields}\r\n".encode())
        assert response.startswith(b"HTTP/1.1 431 ")
    held = await trio.open_tcp_stream("127.0.0.1", port)
    async with held:
        await exchange(held, get("plain.example.test"))  # held open: kept alive
        second = await trio.open_tcp_stream("127.0.0.1", port)
        async with second:
            with trio.fail_after(5):
                assert await second.receive_some(100) == b""  # refused: one connection per IP
    assert len(seen) == 1


def write(tmp_path, extra: str) -> None:
    (tmp_path / "edge.yml").write_text(f"zone: [example.test, other.test]\npublic-ip: 127.0.0.1\n{extra}")


def test_config_key(tmp_path):
    write(tmp_path, "http-listen: 127.0.0.1:8080\nhttp-redirect-exempt: [Plain.Example.Test., '*.open.example.test']\n")
    cfg = load_edge_config(tmp_path)
    assert cfg.http_redirect_exempt == ("plain.example.test", "*.open.example.test")
    write_edge_config(cfg)
    assert load_edge_config(tmp_path) == cfg
    write(tmp_path, "http-listen: 127.0.0.1:8080\n")
    assert load_edge_config(tmp_path).http_redirect_exempt == ()


@pytest.mark.parametrize(
    "extra, message",
    [
        ("http-redirect-exempt: [a.example.test]\n", "needs http-listen"),
        ("http-listen: :80\nhttp-redirect-exempt: a.example.test\n", "expected a list"),
        ("http-listen: :80\nhttp-redirect-exempt: ['a b']\n", "invalid hostname 'a b'"),
        ("http-listen: :80\nhttp-redirect-exempt: ['*.*.example.test']\n", "invalid hostname"),
        ("http-listen: :80\nhttp-redirect-exempt: [null]\n", "invalid hostname None"),
        ("http-listen: :80\nhttp-redirect-exempt: [other.test]\n", "other.test is a zone apex"),
    ],
)
def test_config_key_refuses_bad_values(tmp_path, extra, message):
    write(tmp_path, extra)
    with pytest.raises(ConfigError, match="http-redirect-exempt") as caught:
        load_edge_config(tmp_path)
    assert message in str(caught.value)
