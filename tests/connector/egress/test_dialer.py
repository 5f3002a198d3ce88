"""The trio dialer through real proxies on loopback: tinyproxy (HTTP CONNECT, BasicAuth) and
danted (SOCKS5, names resolved by the connector or by the proxy), to a real echo server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from functools import partial
from pathlib import Path

import pytest
import trio

from connector.egress.dialer import open_tcp_stream
from connector.egress.errors import ProxyAuthError, ProxyRefused
from connector.egress.proxies import ProxyURL, parse_proxy_url
from shared.errors import Unreachable
from tests.e2e import proxies
from tests.e2e.conftest import free_port, refusing_port

pytestmark = pytest.mark.skipif(not (shutil.which("tinyproxy") and shutil.which("danted")), reason="tinyproxy/danted missing")


def _start(argv: list[str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{argv[0]} exited:\n{log.read_text()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{argv[0]} did not listen")


@pytest.fixture(scope="module")
def real_proxies(tmp_path_factory):
    """(tinyproxy URL with the right password, danted URL without a scheme-specific part)."""
    if os.geteuid() != 0:
        pytest.skip("danted drops privileges: needs root")
    tmp = tmp_path_factory.mktemp("proxies")
    tiny_port, dante_port = free_port(), free_port()
    procs = [
        _start(proxies.tinyproxy_argv(tmp, "127.0.0.1", tiny_port), tiny_port, tmp / "tinyproxy.log"),
        _start(proxies.danted_argv(tmp, "127.0.0.1", dante_port, "127.0.0.1", "127.0.0.0/8"), dante_port, tmp / "danted.log"),
    ]
    yield tiny_port, dante_port
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


async def _echo_server(nursery) -> int:
    async def echo(stream):
        async with stream:
            async for data in stream:
                await stream.send_all(data)

    [listener] = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
    return listener.socket.getsockname()[1]


async def _round_trip(host: str, port: int, proxy: ProxyURL | None) -> bytes:
    with trio.fail_after(10):
        stream = await open_tcp_stream(host, port, proxy)
        async with stream:
            await stream.send_all(b"through the proxy")
            return await stream.receive_some(100)


@pytest.mark.parametrize("url", [
    "http://{user}:{password}@127.0.0.1:{tiny}",
    "socks5://127.0.0.1:{dante}",  # "localhost" resolved here, the address sent
    "socks5h://127.0.0.1:{dante}",  # "localhost" sent for danted to resolve
])
async def test_each_proxy_carries_a_stream(real_proxies, url, nursery):
    tiny, dante = real_proxies
    proxy = parse_proxy_url(url.format(user=proxies.PROXY_USER, password=proxies.PROXY_PASSWORD, tiny=tiny, dante=dante), "test")
    port = await _echo_server(nursery)
    assert await _round_trip("localhost", port, proxy) == b"through the proxy"


async def test_refusals_are_typed_and_redacted(real_proxies, nursery):
    tiny, dante = real_proxies
    port = await _echo_server(nursery)
    wrong = parse_proxy_url(f"http://{proxies.PROXY_USER}:hunter2@127.0.0.1:{tiny}", "test")
    with pytest.raises(ProxyAuthError) as error:
        await _round_trip("127.0.0.1", port, wrong)
    assert "hunter2" not in str(error.value) and f"{proxies.PROXY_USER}:***@" in str(error.value)
    with pytest.raises(ProxyAuthError, match="requires a user name"):
        await _round_trip("127.0.0.1", port, parse_proxy_url(f"http://127.0.0.1:{tiny}", "test"))
    with refusing_port() as closed:
        with pytest.raises(ProxyRefused, match="connection refused"):  # danted's SOCKS5 reply code
            await _round_trip("127.0.0.1", closed, parse_proxy_url(f"socks5://127.0.0.1:{dante}", "test"))
        with pytest.raises(Unreachable, match="cannot reach proxy .*Connection refused"):
            await _round_trip("127.0.0.1", port, parse_proxy_url(f"socks5://127.0.0.1:{closed}", "test"))
