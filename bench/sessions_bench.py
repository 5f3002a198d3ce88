"""Connector sessions one edge process holds: many simulated connectors from one process (issue 18).

Starts a real `burrow-edge serve` (loopback, dev CA, SQLite, registration limits raised), then
opens `--sessions` tunnel sessions from `--processes` simulator processes (this script in worker
mode, many sessions per process), each session its own connector (its own connector id, one
session each, real TLS 1.3 and registration), spread over `--tunnels` tunnels. Every process and
the edge get the hard RLIMIT_NOFILE; opening is bounded by `--open-timeout` seconds.
Reports the edge's RSS and CPU: before, with every session idle for `--seconds`, and with 1 % of
the tunnels' hostnames getting 1 request/s each (real HTTPS requests through the edge, answered
by the simulated connectors). Memory per session = (RSS with sessions - RSS before) / sessions.
Prints the figures, then the same as JSON on the last line.

    .venv/bin/python bench/sessions_bench.py [--sessions 2000] [--tunnels 100] [--seconds 10] [--processes 4]
                                             [--open-timeout 600] [--edge-heartbeat-timeout 15s]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import ssl
import sys
import tempfile
import time
import uuid
from pathlib import Path

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import connector.tunnel.connection as dialing  # noqa: E402
from connector.tunnel.connection import DialLimits, open_tunnel_connection  # noqa: E402
from edge.registry.store import Registry  # noqa: E402
from shared.credentials import Credentials, load_credentials, save_credentials  # noqa: E402
from shared.crypto import mint_secret  # noqa: E402
from shared.errors import BurrowError  # noqa: E402
from shared.events import ResponseHead  # noqa: E402
from shared.values import Secret  # noqa: E402
from tests.e2e.conftest import ZONE, start_edge  # noqa: E402

OPEN_AT_ONCE = 16  # registrations in flight at a time, per simulator process (more only queue up on a starved edge)
ATTEMPTS = 3
BODY = b"ok"
PROGRESS_EVERY = 0.5  # seconds between a simulator's progress lines
HOLD_CAP = 3600  # seconds a simulator holds its sessions at most, whatever the parent does
SIMULATOR_PING_TIMEOUT = 120.0  # seconds: a starved edge's late PONG does not make a simulator drop its session
SIMULATOR_DIAL_TIMEOUT = 60.0  # seconds for the TLS handshake and for the registration: a slow one is not dialled again

LIMITS = DialLimits(  # PINGs every 10 s as a connector's; handshakes and answers awaited longer
    handshake_timeout=SIMULATOR_DIAL_TIMEOUT, registration_timeout=SIMULATOR_DIAL_TIMEOUT, ping_timeout=SIMULATOR_PING_TIMEOUT
)
# Each simulator builds its client TLS context once, as one real connector process does (not once per session).
dialing.tunnel_client_context = functools.cache(dialing.tunnel_client_context)


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
                connection, _ = await open_tunnel_connection(creds, str(uuid.uuid4()), 0, LIMITS)
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


async def simulate(tunnels: list[Credentials], count: int, offset: int) -> None:
    """Worker mode: hold `count` sessions, print `progress OPEN FAILED` lines, stop at EOF on stdin."""
    limiter = trio.CapacityLimiter(OPEN_AT_ONCE)
    opened: list = []
    failed: list = []
    stdin = trio.lowlevel.FdStream(os.dup(0))

    async def report() -> None:
        last = None
        while True:
            if (len(opened), len(failed)) != last:
                last = (len(opened), len(failed))
                print(f"progress {last[0]} {last[1]}", flush=True)
            await trio.sleep(PROGRESS_EVERY)

    with trio.move_on_after(HOLD_CAP):
        async with trio.open_nursery() as nursery:
            for number in range(count):
                nursery.start_soon(hold_session, tunnels[(offset + number) % len(tunnels)], limiter, opened, failed)
            nursery.start_soon(report)
            while await stdin.receive_some(64):
                pass
            nursery.cancel_scope.cancel()


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


async def follow(process: trio.Process, progress: dict, index: int) -> None:
    """Keep `progress[index]` at the simulator's latest (open, failed) counts."""
    pending = b""
    while chunk := await process.stdout.receive_some(4096):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"progress "):
                progress[index] = tuple(int(n) for n in line.split()[1:3])


async def run(edge, creds_dir: Path, tunnel_count: int, hosts: list[str], opts) -> dict:
    pid = edge.proc.pid
    figures = {"sessions": opts.sessions, "tunnels": tunnel_count, "processes": opts.processes,
               "edge_heartbeat_timeout": opts.edge_heartbeat_timeout, "load_average_before": Path("/proc/loadavg").read_text().split()[:3]}
    await trio.sleep(1)
    figures["edge_rss_mib_before"] = round(rss_mib(pid), 1)
    progress = {index: (0, 0) for index in range(opts.processes)}
    shares = [opts.sessions // opts.processes + (index < opts.sessions % opts.processes) for index in range(opts.processes)]
    processes = []
    async with trio.open_nursery() as nursery:
        started = time.monotonic()
        for index, share in enumerate(shares):
            command = [sys.executable, __file__, "--simulate", str(creds_dir), "--sessions", str(share),
                       "--offset", str(sum(shares[:index]))]
            process = await trio.lowlevel.open_process(command, stdin=-1, stdout=-1)  # -1: subprocess.PIPE
            processes.append(process)
            nursery.start_soon(follow, process, progress, index)
        try:
            with trio.move_on_after(opts.open_timeout):
                while sum(map(sum, progress.values())) < opts.sessions:
                    await trio.sleep(0.2)
            figures["open_seconds"] = round(time.monotonic() - started, 1)
            figures["sessions_open"] = sum(held for held, _ in progress.values())
            figures["sessions_not_opened"] = opts.sessions - figures["sessions_open"]
            figures["edge_rss_mib_open"] = round(rss_mib(pid), 1)
            await trio.sleep(2)
            cpu, since = cpu_seconds(pid), time.monotonic()
            await trio.sleep(opts.seconds)
            figures["edge_cpu_percent_idle"] = round(100 * (cpu_seconds(pid) - cpu) / (time.monotonic() - since), 1)
            figures["edge_rss_mib_idle"] = round(rss_mib(pid), 1)
            figures["sessions_held_idle"] = sum(held for held, _ in progress.values())
            figures["kib_per_session"] = round(
                (figures["edge_rss_mib_idle"] - figures["edge_rss_mib_before"]) * 1024 / max(1, figures["sessions_held_idle"]), 1)
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
            figures["sessions_held_serving"] = sum(held for held, _ in progress.values())
        finally:
            for process in processes:
                await process.stdin.aclose()  # EOF: the simulator closes its sessions and exits
            with trio.move_on_after(30):
                for process in processes:
                    await process.wait()
            for process in processes:
                if process.returncode is None:
                    process.kill()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--tunnels", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=4, help="simulator processes the sessions are spread over")
    parser.add_argument("--open-timeout", type=float, default=600.0, help="seconds to wait for every session to open")
    parser.add_argument("--edge-heartbeat-timeout", default="15s",
                        help="the edge's --heartbeat-timeout (its default 15s; longer tolerates starved simulators)")
    parser.add_argument("--simulate", type=Path, help=argparse.SUPPRESS)  # worker mode: a directory of credentials
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the edge and the simulators inherit it
    if opts.simulate:
        tunnels = [load_credentials(path) for path in sorted(opts.simulate.glob("*.json"))]
        trio.run(simulate, tunnels, opts.sessions, opts.offset)
        return
    if not (0 < opts.processes <= opts.sessions):
        parser.error("--processes must be between 1 and --sessions")
    tmp = Path(tempfile.mkdtemp(prefix="burrow-sessions-"))
    serve_args = ("--loglevel", "warning", "--registration-burst", "1000000", "--registration-rate", "1000000",
                  "--heartbeat-timeout", opts.edge_heartbeat_timeout)
    edge = start_edge(tmp, serve_args=serve_args)
    try:
        registry = Registry.open(edge.home / "registry.db")
        account, _ = registry.create_account("bench")
        hosts = []
        creds_dir = tmp / "credentials"
        creds_dir.mkdir()
        ca = edge.ca.read_text()
        for number in range(opts.tunnels):
            secret = mint_secret()
            tunnel = registry.create_tunnel(account.id, f"t{number}", secret)
            host = f"t{number}.{ZONE}"
            registry.route_dns(account.id, tunnel.id, host, ZONE)
            hosts.append(host)
            creds = Credentials(account.id, tunnel.id, tunnel.name, Secret(secret), f"127.0.0.1:{edge.tunnel_port}", ca, ZONE)
            save_credentials(creds_dir / f"{number:06d}.json", creds)
        registry.close()
        time.sleep(6)  # the edge's 5 s poll picks the routes up
        figures = trio.run(run, edge, creds_dir, opts.tunnels, hosts, opts)
        figures["load_average_after"] = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        for proc in reversed(edge.procs):
            proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
