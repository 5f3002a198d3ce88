"""Issue 16, public TCP and UDP ports: an edge opted in with `--tcp-ports` / `--udp-ports`,
tunnels reserving ports with `burrow tunnel route tcp|udp`, and the connector's `tcp:` /
`udp:` routes to real servers: OpenSSH, a 100 MiB echo, half-closes, PROXY protocol,
dnsmasq answering `dig`, and 10,000 datagrams over 50 concurrent flows."""

from __future__ import annotations

import getpass
import hashlib
import os
import random
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import BIN, free_port, start_edge, wait_until
from tests.e2e.test_tcp_access import SSHD, start_sshd
from tests.e2e.tunnels import ReportHandler, start_server, start_tcp_echo

ECHO_SIZE = 100 * 1024 * 1024
FLOWS = 50
DATAGRAMS = 10_000
WINDOW = 8  # datagrams a flow keeps in flight
DNSMASQ = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)
DNS_NAME, DNS_ADDRESS = "db.ports.test", "198.18.0.7"
PG_BIN = Path("/usr/lib/postgresql/15/bin")

# Ports of the edge's public ranges, below Linux's ephemeral range so no client socket holds them.
BASE = random.Random(os.getpid()).randrange(20000, 32000, 16)
ECHO, SSH, HALF, PROXIED, LATER, UNCONFIGURED, POSTGRES = (BASE + i for i in range(7))
DNS, UDP_ECHO = BASE, BASE + 1
RANGE = f"{BASE}-{BASE + 15}"
PORT_LIMIT = 9  # the fixture's account holds 8 ports: room for one more


class FirstLineHandler(socketserver.BaseRequestHandler):
    """Sends back the first line it receives (the PROXY protocol header)."""

    def handle(self) -> None:
        line = b""
        while b"\r\n" not in line and (data := self.request.recv(1)):
            line += data
        self.request.sendall(line)


def start_udp_echo() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                data, peer = sock.recvfrom(65535)
                sock.sendto(data, peer)
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    return sock


def start_dnsmasq(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", f"--port={port}",
            "--listen-address=127.0.0.1", "--bind-interfaces", f"--address=/{DNS_NAME}/{DNS_ADDRESS}",
            f"--pid-file={tmp / 'dnsmasq.pid'}", "--user=root", "--log-facility=-",
        ],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "dnsmasq.log", "wb"),
    )
    wait_until(lambda: dig(port, DNS_NAME) == DNS_ADDRESS, 20, "dnsmasq to answer")
    return proc, port


def start_postgres() -> tuple[subprocess.Popen, int, Path]:
    """A throwaway PostgreSQL on 127.0.0.1 (trust authentication, user burrow), run as the postgres user under root."""
    data = Path(tempfile.mkdtemp(prefix="burrow-ports-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(data, "postgres")
    subprocess.run([*as_postgres, PG_BIN / "initdb", "-D", data / "db", "-A", "trust", "-U", "burrow", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    proc = subprocess.Popen(
        [*as_postgres, PG_BIN / "postgres", "-D", data / "db", "-p", str(port), "-k", data, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=open(data / "postgres.log", "wb"),
    )
    wait_until(lambda: psql(port, "SELECT 1") == "1", 30, "PostgreSQL to accept connections")
    return proc, port, data


def psql(port: int, query: str) -> str:
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "burrow", "-d", "postgres", "-tAc", query],
        capture_output=True, text=True, timeout=30,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def dig(port: int, name: str) -> str:
    result = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), name, "A", "+short", "+tries=1", "+time=2"],
        capture_output=True, text=True, timeout=20,
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def ports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ports")
    metrics = free_port()
    serve_args = ("--udp-idle-timeout", "2s", "--metrics", f"127.0.0.1:{metrics}", "--max-ports-per-account", str(PORT_LIMIT))
    edge = start_edge(tmp, init_args=("--tcp-ports", RANGE, "--udp-ports", RANGE), serve_args=serve_args)
    servers = [start_tcp_echo(), start_server(ReportHandler), start_server(FirstLineHandler)]
    echo, report, first_line = (server.server_address[1] for server in servers)
    udp_echo = start_udp_echo()
    sshd = start_sshd(tmp_path_factory.mktemp("sshd")) if SSHD and shutil.which("ssh") else None
    dnsmasq = start_dnsmasq(tmp) if DNSMASQ and shutil.which("dig") else None
    postgres = start_postgres() if (PG_BIN / "postgres").exists() and shutil.which("psql") else None
    env = edge.login("porter")
    edge.cli("burrow", "tunnel", "create", "ports-tunnel", env=env)
    for port in (ECHO, SSH, HALF, PROXIED, UNCONFIGURED, POSTGRES):
        edge.cli("burrow", "tunnel", "route", "tcp", "ports-tunnel", port, env=env)
    for port in (DNS, UDP_ECHO):
        edge.cli("burrow", "tunnel", "route", "udp", "ports-tunnel", port, env=env)
    tcp = [(ECHO, echo), (HALF, report), (LATER, echo), (SSH, sshd["port"] if sshd else free_port())]
    tcp += [(POSTGRES, postgres[1])] if postgres else []
    config = Path(env["BURROW_HOME"]) / "config.yml"
    config.write_text(
        "tunnel: ports-tunnel\ntcp:\n"
        + "".join(f"  - port: {port}\n    service: tcp://127.0.0.1:{target}\n" for port, target in tcp)
        + f"  - port: {PROXIED}\n    service: tcp://127.0.0.1:{first_line}\n    originRequest: {{proxyProtocol: v1}}\n"
        + f"udp:\n  - port: {UDP_ECHO}\n    service: udp://127.0.0.1:{udp_echo.getsockname()[1]}\n"
        + (f"  - port: {DNS}\n    service: udp://127.0.0.1:{dnsmasq[1]}\n" if dnsmasq else "")
        + "ingress:\n  - service: http_status:404\n"
    )
    assert edge.cli("burrow", "tunnel", "ingress", "validate", "--config", config, env=env).stdout.strip() == "OK"
    connector = edge.start(["burrow", "tunnel", "run", "--config", config, "ports-tunnel"], "connector", env)
    connector.wait_for_log(r"tunnel\.registered index=", count=4)
    yield {"edge": edge, "env": env, "sshd": sshd, "connector": connector, "config": config, "echo": echo, "metrics": metrics}
    for proc in reversed(edge.procs):
        proc.stop()
    for server in servers:
        server.shutdown()
    udp_echo.close()
    for proc in [sshd["proc"]] if sshd else []:
        proc.terminate()
        proc.wait()
    for proc in [process for process, *_ in (dnsmasq, postgres) if process]:
        proc.terminate()
        proc.wait()
    if postgres:
        shutil.rmtree(postgres[2], ignore_errors=True)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=60)


def test_100_mib_echo_through_a_public_port_keeps_every_byte(ports):
    payload = os.urandom(1024 * 1024)
    sent, received = hashlib.sha256(), hashlib.sha256()
    count = 0
    with connect(ECHO) as sock:

        def send() -> None:
            for _ in range(ECHO_SIZE // len(payload)):
                sock.sendall(payload)
                sent.update(payload)
            sock.shutdown(socket.SHUT_WR)  # the echo server sees EOF and closes: our EOF comes back

        sender = threading.Thread(target=send)
        sender.start()
        while data := sock.recv(1024 * 1024):
            received.update(data)
            count += len(data)
        sender.join()
    assert count == ECHO_SIZE
    assert received.hexdigest() == sent.hexdigest()


def test_half_close_passes_through_both_ways(ports):
    data = os.urandom(3 * 1024 * 1024 + 17)
    with connect(HALF) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the origin answers only once it sees our FIN
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.decode() == f"got {len(data)} bytes {hashlib.sha256(data).hexdigest()}"


def test_proxy_protocol_gives_the_origin_the_visitors_address(ports):
    with socket.create_connection(("127.0.0.1", PROXIED), timeout=30, source_address=("127.0.0.2", 0)) as sock:
        source_port = sock.getsockname()[1]
        line = sock.makefile("rb").readline()
    assert line.endswith(b"\r\n")
    assert line.split()[:5] == [b"PROXY", b"TCP4", b"127.0.0.2", b"127.0.0.1", str(source_port).encode()]


@pytest.mark.skipif(not SSHD or not shutil.which("ssh"), reason="OpenSSH is not installed: make system-deps")
def test_real_ssh_through_a_public_tcp_port(ports):
    sshd = ports["sshd"]
    result = subprocess.run(
        [
            "ssh", "-p", str(SSH), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-i", str(sshd["key"]),
            f"{getpass.getuser()}@127.0.0.1", "echo hello over a public port; head -c 1000000 /dev/zero | sha256sum",
        ],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "hello over a public port"
    assert result.stdout.split()[-2] == hashlib.sha256(bytes(1000000)).hexdigest()


@pytest.mark.skipif(not (PG_BIN / "postgres").exists() or not shutil.which("psql"), reason="PostgreSQL 15 is not installed: make system-deps")
def test_real_psql_through_a_public_tcp_port(ports):
    assert psql(POSTGRES, "SELECT 41 + 1") == "42"
    rows = psql(POSTGRES, "SELECT count(*), md5(string_agg(i::text, ',')) FROM generate_series(1, 200000) AS i")
    expected = hashlib.md5(",".join(map(str, range(1, 200001))).encode()).hexdigest()
    assert rows == f"200000|{expected}"


def refused(port: int) -> bool:
    try:
        connect(port).close()
    except ConnectionRefusedError:
        return True
    return False


def test_routing_and_releasing_a_port_opens_and_closes_its_listener(ports):
    edge, env = ports["edge"], ports["env"]
    assert refused(LATER)
    edge.cli("burrow", "tunnel", "route", "tcp", "ports-tunnel", LATER, env=env)
    with connect(LATER) as sock:  # open when the CLI returns
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
        info = edge.cli("burrow", "tunnel", "info", "ports-tunnel", env=env).stdout
        assert f"tcp/{LATER}" in info and f"udp/{UDP_ECHO}" in info
        result = edge.cli("burrow", "tunnel", "route", "tcp", "delete", "ports-tunnel", LATER, env=env)
        assert f"Released TCP port {LATER}" in result.stdout
        assert sock.recv(4) == b""  # the port's connections close with it
    assert refused(LATER)


def test_a_port_outside_the_range_or_of_another_account_is_refused(ports):
    edge, env = ports["edge"], ports["env"]
    outside = edge.cli("burrow", "tunnel", "route", "tcp", "ports-tunnel", BASE + 16, env=env, check=False)
    assert outside.returncode != 0
    assert outside.stderr.strip() == f"error: port {BASE + 16} is outside this edge's public TCP ports {RANGE}"
    eve = edge.login("eve")
    edge.cli("burrow", "tunnel", "create", "eve-tunnel", env=eve)
    taken = edge.cli("burrow", "tunnel", "route", "tcp", "eve-tunnel", ECHO, env=eve, check=False)
    assert taken.returncode != 0
    assert taken.stderr.strip() == f"error: TCP port {ECHO} is reserved by another account"
    token = edge.cli("burrow-edge", "account", "create", "mallory", "--home", edge.home).stdout.splitlines()[-1]
    context = ssl.create_default_context(cafile=str(edge.ca))
    with httpx.Client(base_url=edge.url, verify=context, headers={"Authorization": f"Bearer {token}"}) as api:
        api.post("/api/v1/tunnels", json={"name": "m", "secret": "A" * 43 + "="}).raise_for_status()
        answer = api.put(f"/api/v1/tunnels/m/ports/udp/{DNS}")
    assert answer.status_code == 409 and answer.json() == {"error": f"UDP port {DNS} is reserved by another account"}
    with connect(ECHO) as sock:  # still the owner's
        sock.sendall(b"mine")
        assert sock.recv(4) == b"mine"


def test_an_account_past_its_port_limit_is_refused_in_one_line(ports):
    edge, env = ports["edge"], ports["env"]
    spare, over = BASE + 10, BASE + 11
    edge.cli("burrow", "tunnel", "route", "tcp", "ports-tunnel", spare, env=env)  # the account's last one
    try:
        past = edge.cli("burrow", "tunnel", "route", "udp", "ports-tunnel", over, env=env, check=False)
        assert past.returncode != 0
        assert past.stderr.strip() == (
            f"error: this account holds {PORT_LIMIT} public ports, this edge's limit (burrow-edge serve --max-ports-per-account): "
            "release one with `burrow tunnel route tcp|udp delete NAME PORT`"
        )
        moved = edge.cli("burrow", "tunnel", "route", "tcp", "ports-tunnel", spare, env=env)  # one it holds: not one more
        assert moved.returncode == 0
    finally:
        edge.cli("burrow", "tunnel", "route", "tcp", "delete", "ports-tunnel", spare, env=env)


def test_a_port_the_connector_does_not_configure_is_closed_until_config_yml_names_it(ports):
    with connect(UNCONFIGURED) as sock:
        assert sock.recv(1) == b""
    connector, config = ports["connector"], ports["config"]
    connector.wait_for_log(rf"port\.unconfigured protocol=tcp port={UNCONFIGURED}")
    text = config.read_text()
    config.write_text(text.replace("tcp:\n", f"tcp:\n  - port: {UNCONFIGURED}\n    service: tcp://127.0.0.1:{ports['echo']}\n", 1))
    connector.wait_for_log(r"config\.reloaded why=file changed")  # polled every second
    with connect(UNCONFIGURED) as sock:
        sock.sendall(b"reloaded")
        assert sock.recv(8) == b"reloaded"


@pytest.mark.skipif(not DNSMASQ or not shutil.which("dig"), reason="dnsmasq and dig are not installed: make system-deps")
def test_dig_through_a_public_udp_port_gets_the_answer(ports):
    assert dig(DNS, DNS_NAME) == DNS_ADDRESS
    assert dig(DNS, "other.ports.test") == ""  # NXDOMAIN from dnsmasq, which has no upstream


def test_10000_datagrams_over_50_flows_loss_counted(ports):
    """Each flow keeps WINDOW datagrams in flight; every datagram is numbered, so loss is counted exactly."""
    per_flow = DATAGRAMS // FLOWS
    lost, echoed = [0] * FLOWS, [0] * FLOWS

    def flow(index: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.connect(("127.0.0.1", UDP_ECHO))
            next_to_send, waiting = 0, set()
            while next_to_send < per_flow or waiting:
                while next_to_send < per_flow and len(waiting) < WINDOW:
                    sock.send(f"{index}:{next_to_send}:".encode() + bytes(200))
                    waiting.add(next_to_send)
                    next_to_send += 1
                try:
                    number = int(sock.recv(65535).split(b":")[1])
                except TimeoutError:
                    lost[index] += len(waiting)  # nothing for 5 s: what is in flight is lost
                    waiting.clear()
                    continue
                waiting.discard(number)
                echoed[index] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=flow, args=(index,)) for index in range(FLOWS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    seconds = time.monotonic() - started
    print(f"\n{sum(echoed)} of {DATAGRAMS} datagrams echoed over {FLOWS} flows in {seconds:.1f}s, lost {sum(lost)}")
    assert sum(echoed) + sum(lost) == DATAGRAMS
    assert sum(lost) == 0


def test_an_idle_flow_ends_and_the_next_datagram_starts_a_new_one(ports):
    edge = ports["edge"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.bind(("127.0.0.3", 0))  # a visitor address no other test uses: its flow's log line is its own
        sock.connect(("127.0.0.1", UDP_ECHO))
        for attempt in (1, 2):
            sock.send(b"hello %d" % attempt)
            assert sock.recv(100) == b"hello %d" % attempt
            pattern = rf"port\.flow protocol=udp port={UDP_ECHO} peer=127\.0\.0\.3 datagrams_in=1 datagrams_out=1"
            edge.proc.wait_for_log(pattern, count=attempt, timeout=10)  # --udp-idle-timeout 2s


def test_ingress_validate_names_each_bad_port_entry(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(
        "tcp:\n  - port: 70000\n    service: tcp://127.0.0.1:22\n  - port: 2222\n    service: http://127.0.0.1:80\n"
        "  - port: 2223\n    service: tcp://127.0.0.1:22\n    originRequest: {proxyProtocol: v3}\n"
        "udp:\n  - port: 53\n    service: udp://127.0.0.1\n    extra: 1\n"
        "ingress:\n  - service: http_status:404\n"
    )
    command = [BIN / "burrow", "tunnel", "ingress", "validate", "--config", config]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {config} line 2: tcp[1].port: must be a port number 1-65535 (of the edge's range), not 70000",
        f"error: {config} line 5: tcp[2].service: 'http://127.0.0.1:80' is not a TCP origin: use tcp://HOST:PORT",
        f"error: {config} line 8: tcp[3].originRequest.proxyProtocol: must be v1 or v2, not 'v3'",
        f"error: {config} line 12: udp[1].extra: unknown key (known: port, service)",
        f"error: {config} line 11: udp[1].service: 'udp://127.0.0.1' is not a UDP origin: use udp://HOST:PORT",
    ]


def test_metrics_count_each_ports_connections_flows_and_drops(ports):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(10)
        udp.sendto(b"counted", ("127.0.0.1", UDP_ECHO))
        assert udp.recv(100) == b"counted"
    with connect(ECHO) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        text = httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=10).text
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("burrow_edge_port_"))
    assert float(samples[f'burrow_edge_port_open{{port="{ECHO}",protocol="tcp"}}']) == 1
    assert float(samples[f'burrow_edge_port_connections_total{{port="{ECHO}",protocol="tcp"}}']) >= 1
    assert float(samples[f'burrow_edge_port_connections_total{{port="{UDP_ECHO}",protocol="udp"}}']) >= 1
    assert float(samples[f'burrow_edge_port_datagrams_dropped_total{{port="{UDP_ECHO}"}}']) == 0
