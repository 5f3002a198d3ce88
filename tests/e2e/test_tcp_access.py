"""Issue 5: raw TCP and SSH through the tunnel with `burrow access tcp/ssh` (the only
client of our `Upgrade: burrow-tcp`): many concurrent connections, a real sshd,
half-closes both ways (with real sockets and `nc -N`), and clear errors for an HTTP
route, an origin that is down and a local port in use."""

from __future__ import annotations

import concurrent.futures
import getpass
import hashlib
import os
import queue
import shutil
import socket
import socketserver
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, ZONE, free_port, wait_until
from tests.e2e.tunnels import ReportHandler, run_tunnel, start_server, start_tcp_echo

CONNECTIONS = 100
PAYLOAD = 1024 * 1024
SCP_SIZE = 50 * 1024 * 1024
HALF_CLOSE_SIZE = 8 * 1024 * 1024  # sent after the far side's EOF, or before the client's own
GREETING = b"hello, then EOF from the origin\n"
NC = shutil.which("nc")
SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


class GreetThenReadHandler(socketserver.BaseRequestHandler):
    """Sends GREETING and shuts down its write side, then reads to the client's EOF and
    puts (size, sha256) of what came on the server's `received` queue."""

    def handle(self) -> None:
        self.request.sendall(GREETING)
        self.request.shutdown(socket.SHUT_WR)
        digest, size = hashlib.sha256(), 0
        while data := self.request.recv(65536):
            digest.update(data)
            size += len(data)
        self.server.received.put((size, digest.hexdigest()))


@pytest.fixture(scope="module")
def routes(edge, tmp_path_factory):
    echo = start_tcp_echo()
    report = start_server(ReportHandler)
    greeter = start_server(GreetThenReadHandler)
    greeter.received = queue.Queue()
    sshd = start_sshd(tmp_path_factory.mktemp("sshd")) if SSHD and shutil.which("ssh") else None
    rules = [
        ("echo", f"tcp://127.0.0.1:{echo.server_address[1]}"),
        ("down", f"tcp://127.0.0.1:{free_port()}"),
        ("web", "hello_world"),
    ]
    if sshd:
        rules.append(("ssh", f"ssh://127.0.0.1:{sshd['port']}"))
    rules += [("report", f"tcp://127.0.0.1:{report.server_address[1]}"), ("greeter", f"tcp://127.0.0.1:{greeter.server_address[1]}")]
    connector = run_tunnel(edge, "tcp-tunnel", rules)
    yield {"sshd": sshd, "connector": connector, "greeter": greeter}
    for server in (echo, report, greeter):
        server.shutdown()
    if sshd:
        sshd["proc"].terminate()
        sshd["proc"].wait()


def access_args(edge, host: str) -> list[str]:
    return ["--hostname", f"{host}.{ZONE}", "--edge", f"127.0.0.1:{edge.https_port}", "--ca-file", str(edge.ca)]


def start_access(edge, host: str):
    port = free_port()
    proc = edge.start(["burrow", "access", "tcp", *access_args(edge, host), "--url", f"127.0.0.1:{port}", "--loglevel", "debug"],
                      f"access-{host}-{port}", edge.env)
    proc.wait_for_log(r"access\.listening")
    return proc, port


def stop_after(proc, connections: int) -> None:
    """Each of the `connections` ended without taking the listener down; then stop it."""
    proc.wait_for_log(r"access\.closed", count=connections, timeout=30)
    assert proc.alive() and "Traceback" not in proc.log(), proc.log()
    proc.stop()


def echo_once(port: int, seed: int) -> bool:
    payload = hashlib.sha256(str(seed).encode()).digest() * (PAYLOAD // 32)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(payload)
        received = bytearray()
        while len(received) < len(payload):
            data = sock.recv(1 << 20)
            if not data:
                break
            received += data
    return bytes(received) == payload


def test_100_concurrent_connections_echo_1_mib_each(edge, routes):
    proc, port = start_access(edge, "echo")
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CONNECTIONS) as pool:
        results = list(pool.map(lambda i: echo_once(port, i), range(CONNECTIONS)))
    elapsed = time.monotonic() - start
    print(f"\ntcp: {CONNECTIONS} connections × 1 MiB echoed in {elapsed:.2f}s")
    assert all(results)
    assert elapsed < 120
    stop_after(proc, CONNECTIONS)


def read_error(proc, port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.settimeout(30)
        assert sock.recv(100) == b""  # closed without a byte
    return proc.wait_for_log(r"error: ")


def test_http_route_is_a_clear_error(edge, routes):
    proc, port = start_access(edge, "web")
    log = read_error(proc, port)
    assert f"web.{ZONE} is not a TCP route (edge answered 400" in log
    routes["connector"].wait_for_log(rf"upgrade\.not_tcp host=web\.{ZONE} rule=3", timeout=10)
    proc.stop()
    result = edge.cli("burrow", "access", "ssh", *access_args(edge, "web"), check=False, timeout=30)
    assert result.returncode != 0
    assert f"web.{ZONE} is not a TCP route" in result.stderr


def test_unrouted_host_is_a_clear_error(edge, routes):
    result = edge.cli("burrow", "access", "ssh", *access_args(edge, "nothing"), check=False, timeout=30)
    assert result.returncode != 0
    assert "edge answered 404" in result.stderr


def test_origin_down_is_a_clear_error_and_leaves_no_stream(edge, routes):
    result = edge.cli("burrow", "access", "ssh", *access_args(edge, "down"), check=False, timeout=30)
    assert result.returncode == 4, result.stderr
    assert "TCP origin is unavailable (edge answered 502" in result.stderr
    assert "unreachable" in result.stderr
    routes["connector"].wait_for_log(r"origin\.failed request_id=\S+ rule=2 error=origin tcp://127\.0\.0\.1:\d+ is unreachable", timeout=10)
    # the edge and connector still serve the echo route afterwards
    proc, port = start_access(edge, "echo")
    assert echo_once(port, 7)
    stop_after(proc, 1)


def start_sshd(tmp: Path) -> dict:
    port = free_port()
    host_key = tmp / "host_key"
    client_key = tmp / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client_key)], check=True)
    authorized = tmp / "authorized_keys"
    authorized.write_text((tmp / "client_key.pub").read_text())
    authorized.chmod(0o600)
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {tmp / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=open(tmp / "sshd.log", "wb"))

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_until(listening, 20, "sshd to listen")
    return {"port": port, "proc": proc, "key": client_key, "tmp": tmp}


def ssh_options(edge, sshd: dict) -> list[str]:
    proxy = " ".join([str(BIN / "burrow"), "access", "ssh", *access_args(edge, "ssh")])
    return [
        "-o", f"ProxyCommand={proxy}", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-i", str(sshd["key"]),
    ]


@pytest.mark.skipif(not SSHD, reason="sshd (openssh-server) is not installed: make system-deps")
def test_ssh_command_and_scp_round_trip(edge, routes):
    sshd = routes["sshd"]
    user = getpass.getuser()
    target = f"{user}@ssh.{ZONE}"
    result = subprocess.run(["ssh", *ssh_options(edge, sshd), target, "echo hello from $(hostname)"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hello from")
    tmp = sshd["tmp"]
    source = tmp / "big.bin"
    source.write_bytes(os.urandom(SCP_SIZE))
    start = time.monotonic()
    up = subprocess.run(["scp", *ssh_options(edge, sshd), str(source), f"{target}:{tmp / 'uploaded.bin'}"],
                        capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    down = subprocess.run(["scp", *ssh_options(edge, sshd), f"{target}:{tmp / 'uploaded.bin'}", str(tmp / "back.bin")],
                          capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr
    print(f"\nssh: scp 50 MiB up and down in {time.monotonic() - start:.2f}s")
    digest = hashlib.sha256(source.read_bytes()).digest()
    assert hashlib.sha256((tmp / "back.bin").read_bytes()).digest() == digest


def test_busy_local_port_is_one_clear_line(edge, routes):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = edge.cli("burrow", "access", "tcp", *access_args(edge, "echo"), "--url", f"127.0.0.1:{port}",
                          check=False, timeout=30)
    assert result.returncode == 2, result.stderr  # ConfigError, as the edge's own busy listeners
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{port} (--url): Address already in use\n"
    assert "Traceback" not in result.stdout + result.stderr
    result = edge.cli("burrow", "access", "tcp", *access_args(edge, "echo"), "--url", "127.0.0.1:99999", check=False, timeout=30)
    assert (result.returncode, result.stderr) == (2, "error: '127.0.0.1:99999': the port must be at most 65535\n")


def read_to_eof(sock: socket.socket) -> bytes:
    received = bytearray()
    while data := sock.recv(1 << 20):
        received += data
    return bytes(received)


def report_of(payload: bytes) -> bytes:
    return f"got {len(payload)} bytes {hashlib.sha256(payload).hexdigest()}".encode()


def test_client_half_close_reaches_the_origin_and_its_reply_comes_back(edge, routes):
    proc, port = start_access(edge, "report")
    payload = os.urandom(HALF_CLOSE_SIZE)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # the origin answers only once it has read to EOF
        assert read_to_eof(sock) == report_of(payload)
    if NC:  # the same with OpenBSD nc, which shuts down its write side at the end of its input (-N)
        result = subprocess.run([NC, "-N", "127.0.0.1", str(port)], input=payload, capture_output=True, timeout=60)
        assert result.stdout == report_of(payload), result.stderr
    stop_after(proc, 2 if NC else 1)


def test_origin_half_close_reaches_the_client_which_can_still_send(edge, routes):
    proc, port = start_access(edge, "greeter")
    payload = os.urandom(HALF_CLOSE_SIZE)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        assert read_to_eof(sock) == GREETING  # the origin's EOF came through
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        assert routes["greeter"].received.get(timeout=60) == (len(payload), hashlib.sha256(payload).hexdigest())
        assert read_to_eof(sock) == b""
    stop_after(proc, 1)


def test_access_ssh_passes_the_end_of_stdin_on(edge, routes):
    """`access ssh` (stdin/stdout): the end of stdin is the origin's EOF; its reply comes out on stdout."""
    payload = os.urandom(1024 * 1024)
    result = subprocess.run([str(BIN / "burrow"), "access", "ssh", *access_args(edge, "report")],
                            input=payload, capture_output=True, timeout=60, env=edge.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == report_of(payload)


def test_no_stream_is_left_open_afterwards(edge, routes):
    """Run last: a connector with a stuck stream would sit out its whole drain grace period."""
    connector = routes["connector"]
    start = time.monotonic()
    connector.stop()
    assert connector.popen.returncode == 0
    assert time.monotonic() - start < 10, "the connector waited for streams that never ended"
