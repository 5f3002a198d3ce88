"""Connector sessions one edge process holds: many simulated connectors from one process (issue 18).

Starts a real `burrow-edge serve` (loopback, dev CA, SQLite, registration limits raised), then
opens `--sessions` tunnel sessions from this one trio process, each as its own connector (its own
connector id, one session each, real TLS 1.3 and registration), spread over `--tunnels` tunnels.
Reports the edge's RSS and CPU: before, with every session idle for `--seconds`, and with 1 % of
the tunnels' hostnames getting 1 request/s each (real HTTPS requests through the edge, answered
by the simulated connectors). Memory per session = (RSS with sessions - RSS before) / sessions.
Prints the figures, then the same as JSON on the last line.

    .venv/bin/python bench/sessions_bench.py [--sessions 2000] [--tunnels 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from connector.tunnel.connection import DialLimits, open_tunnel_connection  # noqa: E402
from edge.registry.store import Registry  # noqa: E402
from shared.credentials import Credentials  # noqa: E402
from shared.crypto import mint_secret  # noqa: E402
from shared.errors import BurrowError  # noqa: E402
from shared.events import ResponseHead  # noqa: E402
from shared.values import Secret  # noqa: E402
from tests.e2e.conftest import ZONE, start_edge  # noqa: E402

OPEN_AT_ONCE = 64  # registrations in flight at a time
ATTEMPTS = 3
BODY = b"ok"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def answer(stream) -> None:
    await stream.send_response(ResponseHead(200, ((b"content-length", str(len(BODY)).encode()),)))
    await stream.send(BODY)
    await stream.end()


async def hold_session(creds: Credentials, limiter: trio.CapacityLimiter, opened: list, failed: list) -> None:
    """One simulated connector: up to `ATTEMPTS` tries to register, then serve until cancelled."""
    for attempt in range(ATTEMPTS):
        try:
            async with limiter:
                connection, _ = await open_tunnel_connection(creds, str(uuid.uuid4()), 0, DialLimits())
            break
        except BurrowError as exc:
            if attempt == ATTEMPTS - 1:
                failed.append(str(exc))
                return
    opened.append(connection)
    try:
        await connection.serve(answer)
    except BurrowError:
        pass
    opened.remove(connection)  # lost (an unanswered PING on a saturated machine): no longer held


async def request(edge, host: str, context: ssl.SSLContext, results: list) -> None:
    try:
        with trio.fail_after(10):
            stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", edge.https_port), context, server_hostname=host, https_compatible=True)
            await stream.send_all(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := await stream.receive_some(4096):
                reply += chunk
            await stream.aclose()
        results.append(reply.startswith(b"HTTP/1.1 200"))
    except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError):
        results.append(False)


async def run(edge, tunnels: list[Credentials], hosts: list[str], opts) -> dict:
    pid = edge.proc.pid
    figures = {"sessions": opts.sessions, "tunnels": len(tunnels)}
    await trio.sleep(1)
    figures["edge_rss_mib_before"] = round(rss_mib(pid), 1)
    limiter = trio.CapacityLimiter(OPEN_AT_ONCE)
    opened: list = []
    failed: list = []
    async with trio.open_nursery() as nursery:
        started = time.monotonic()
        for number in range(opts.sessions):
            nursery.start_soon(hold_session, tunnels[number % len(tunnels)], limiter, opened, failed)
        with trio.move_on_after(max(120, opts.sessions / 10)):
            while len(opened) + len(failed) < opts.sessions:
                await trio.sleep(0.2)
        figures["open_seconds"] = round(time.monotonic() - started, 1)
        figures["sessions_open"] = len(opened)
        figures["sessions_not_opened"] = len(failed)
        await trio.sleep(2)
        cpu, since = cpu_seconds(pid), time.monotonic()
        await trio.sleep(opts.seconds)
        figures["edge_cpu_percent_idle"] = round(100 * (cpu_seconds(pid) - cpu) / (time.monotonic() - since), 1)
        figures["edge_rss_mib_idle"] = round(rss_mib(pid), 1)
        figures["sessions_held_idle"] = len(opened)
        figures["kib_per_session"] = round((figures["edge_rss_mib_idle"] - figures["edge_rss_mib_before"]) * 1024 / max(1, len(opened)), 1)
        rate = max(1, opts.sessions // 100)  # 1 % of the sessions serving 1 req/s each
        context = ssl.create_default_context(cafile=str(edge.ca))
        results: list[bool] = []
        cpu, since = cpu_seconds(pid), time.monotonic()
        async with trio.open_nursery() as load:
            for number in range(int(rate * opts.seconds)):
                load.start_soon(request, edge, hosts[number % len(hosts)], context, results)
                await trio.sleep_until(trio.current_time() + max(0.0, since + (number + 1) / rate - time.monotonic()))
        figures["requests_per_s"] = rate
        figures["requests_ok"] = f"{sum(results)}/{len(results)}"
        figures["edge_cpu_percent_serving"] = round(100 * (cpu_seconds(pid) - cpu) / (time.monotonic() - since), 1)
        figures["edge_rss_mib_serving"] = round(rss_mib(pid), 1)
        nursery.cancel_scope.cancel()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--tunnels", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    opts = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the edge inherits it
    tmp = Path(tempfile.mkdtemp(prefix="burrow-sessions-"))
    serve_args = ("--loglevel", "warning", "--registration-burst", "1000000", "--registration-rate", "1000000")
    edge = start_edge(tmp, serve_args=serve_args)
    try:
        registry = Registry.open(edge.home / "registry.db")
        account, _ = registry.create_account("bench")
        tunnels, hosts = [], []
        ca = edge.ca.read_text()
        for number in range(opts.tunnels):
            secret = mint_secret()
            tunnel = registry.create_tunnel(account.id, f"t{number}", secret)
            host = f"t{number}.{ZONE}"
            registry.route_dns(account.id, tunnel.id, host, ZONE)
            hosts.append(host)
            tunnels.append(Credentials(account.id, tunnel.id, tunnel.name, Secret(secret), f"127.0.0.1:{edge.tunnel_port}", ca, ZONE))
        registry.close()
        time.sleep(6)  # the edge's 5 s poll picks the routes up
        figures = trio.run(run, edge, tunnels, hosts, opts)
    finally:
        for proc in reversed(edge.procs):
            proc.stop()
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
