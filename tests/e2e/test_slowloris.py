"""Acceptance 2 of the hardening work: hundreds of connections dripping one header byte per
second do not stop a normal client (real curl) from being served, and each is closed at the
header timeout; one client IP cannot hold more than its share of connections."""

from __future__ import annotations

import ssl

import pytest
import trio

from tests.e2e.conftest import ZONE, start_edge

HEADER_TIMEOUT = 2.0
PER_IP = 64
ATTACKERS = [f"127.0.0.{n}" for n in range(2, 6)]  # the normal client is 127.0.0.1
PER_ATTACKER = 50  # 200 dripping connections in all, each address under the per-IP limit
HOST = f"app.{ZONE}"


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    edge = start_edge(
        tmp_path_factory.mktemp("slowloris"),
        serve_args=("--header-timeout", f"{HEADER_TIMEOUT:g}s", "--max-connections-per-ip", str(PER_IP)),
    )
    yield edge
    for proc in reversed(edge.procs):
        proc.stop()


async def drip(port: int, ca: str, source: str, results: list) -> None:
    """One slowloris connection: TLS, then a request head one byte per second; record how
    long after the handshake the edge closed it."""
    tcp = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    stream = trio.SSLStream(tcp, ssl.create_default_context(cafile=ca), server_hostname=HOST)
    await stream.do_handshake()
    started = trio.current_time()
    try:
        for byte in f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: {'a' * 30}".encode():
            await stream.send_all(bytes([byte]))
            with trio.move_on_after(1):
                if not await stream.receive_some(1024):
                    break
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError):
        pass
    results.append(trio.current_time() - started)
    await trio.aclose_forcefully(stream)


async def curl_ok(edge) -> bool:
    result = await trio.to_thread.run_sync(lambda: edge.curl(HOST, "/", "-o", "/dev/null", "-w", "%{http_code}", timeout=20))
    return result.stdout == b"200"


async def test_dripping_connections_are_closed_at_the_header_timeout_while_curl_is_served(stack):
    edge = stack.edge
    closed_after: list[float] = []
    served = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for source in ATTACKERS:
                for _ in range(PER_ATTACKER):
                    nursery.start_soon(drip, edge.https_port, str(edge.ca), source, closed_after)
            await trio.sleep(0.5)
            for _ in range(5):
                served.append(await curl_ok(edge))
    assert served == [True] * 5
    assert len(closed_after) == len(ATTACKERS) * PER_ATTACKER
    assert min(closed_after) >= HEADER_TIMEOUT - 0.5, sorted(closed_after)[:5]
    assert max(closed_after) <= HEADER_TIMEOUT + 5, sorted(closed_after)[-5:]


async def test_one_ip_holds_at_most_its_connection_limit(stack):
    edge = stack.edge
    held = [await trio.open_tcp_stream("127.0.0.1", edge.https_port, local_address="127.0.0.9") for _ in range(PER_IP)]
    try:
        await trio.sleep(0.3)
        for stream in held:  # the edge waits for their TLS handshakes: still open
            with trio.move_on_after(0.01) as scope:
                await stream.receive_some(1)
            assert scope.cancelled_caught
        extra = await trio.open_tcp_stream("127.0.0.1", edge.https_port, local_address="127.0.0.9")
        with trio.fail_after(5):
            try:
                assert await extra.receive_some(1) == b""  # closed at once
            except trio.BrokenResourceError:
                pass  # or reset
        await extra.aclose()
        assert await curl_ok(edge)  # other addresses are unaffected
    finally:
        for stream in held:
            await stream.aclose()
