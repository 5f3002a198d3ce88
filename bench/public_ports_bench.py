"""Public TCP and UDP ports: echo servers reached directly vs. through a Burrow edge's public
ports and a connector, in the same run, as ratios.

Starts, in a temporary directory and on loopback only, a TCP and a UDP echo server (a
process of their own: this script with --serve-echo), a `burrow-edge` with
--tcp-ports/--udp-ports and a `burrow` connector whose config.yml routes one public TCP
and one public UDP port to them. Then, directly and through the tunnel:

* TCP echo MB/s: one connection, --mb MiB sent while the echo is read back (sha256 compared);
* TCP connections/s: --connections connect / 1-byte echo / close, --parallel at a time;
* UDP datagrams/s: --datagrams datagrams of --size bytes over --flows flows, each keeping
  --window in flight; loss is counted (a datagram unanswered for 2 s is lost).

Every measurement is bounded by a count and by --cap seconds. Prints a table, then the
figures as JSON on the last line of stdout.

    .venv/bin/python bench/public_ports_bench.py [--mb 200] [--connections 2000] [--datagrams 50000]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BIN = Path(sys.executable).parent
ZONE = "example.test"
SETUP_TIMEOUT = 30.0
MIB = 1024 * 1024
UDP_LOSS_TIMEOUT = 2.0


# --- the echo servers (--serve-echo) --------------------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(256 * 1024):
            self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def serve_echo(port_file: Path) -> None:
    tcp = _Server(("127.0.0.1", 0), _Echo)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MIB)
    udp.bind(("127.0.0.1", 0))
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    written = port_file.with_suffix(".tmp")  # renamed into place: the parent never reads a half-written file
    written.write_text(json.dumps({"tcp": tcp.server_address[1], "udp": udp.getsockname()[1]}))
    written.replace(port_file)
    while True:
        data, peer = udp.recvfrom(65535)
        udp.sendto(data, peer)


# --- the stack ------------------------------------------------------------------------


def free_port_pair() -> int:
    """A loopback port free for both TCP and UDP: the edge's one public port of each."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            try:
                udp.bind(("127.0.0.1", tcp.getsockname()[1]))
            except OSError:
                continue
            return tcp.getsockname()[1]
    raise SystemExit("no loopback port free for both TCP and UDP")


def wait_until(check, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SETUP_TIMEOUT
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise SystemExit(f"{what}: the process exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}:\n{log.read_text()[-2000:]}")


def start(stack: contextlib.ExitStack, cmd: list, log: Path, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([str(part) for part in cmd], stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    stack.callback(stop)
    return proc


def cli(cmd: list, env: dict) -> str:
    done = subprocess.run([str(part) for part in cmd], capture_output=True, text=True, env=env, timeout=60)
    if done.returncode:
        raise SystemExit(f"{cmd[0]} {cmd[1]} failed: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def running_stack():
    """Yields the echo servers' ports ("tcp", "udp") and the edge's public port ("public", TCP and UDP) leading to them."""
    with tempfile.TemporaryDirectory(prefix="burrow-ports-bench-") as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
        env["BURROW_HOME"] = str(tmp / "connector")
        port_file = tmp / "echo.json"
        echo = start(stack, [sys.executable, __file__, "--serve-echo", port_file], tmp / "echo.log", env)
        wait_until(port_file.exists, "the echo servers", echo, tmp / "echo.log")
        direct = json.loads(port_file.read_text())
        public = direct["public"] = free_port_pair()
        home = tmp / "edge"
        cli([BIN / "burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca",
             "--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "off",
             "--tcp-ports", public, "--udp-ports", public], env)
        edge = start(stack, [BIN / "burrow-edge", "serve", "--home", home, "--log-level", "warning"], tmp / "edge.log", env)
        wait_until((home / "listen.json").exists, "the edge", edge, tmp / "edge.log")
        https = json.loads((home / "listen.json").read_text())["https"]
        token = cli([BIN / "burrow-edge", "account", "create", "bench", "--home", home], env).splitlines()[-1]
        cli([BIN / "burrow", "tunnel", "login", f"https://{https}", "--token", token, "--ca-file", home / "ca.pem"], env)
        cli([BIN / "burrow", "tunnel", "create", "ports"], env)
        cli([BIN / "burrow", "tunnel", "route", "tcp", "ports", public], env)
        cli([BIN / "burrow", "tunnel", "route", "udp", "ports", public], env)
        config = tmp / "config.yml"
        config.write_text(
            f"tunnel: ports\ntcp:\n  - port: {public}\n    service: tcp://127.0.0.1:{direct['tcp']}\n"
            f"udp:\n  - port: {public}\n    service: udp://127.0.0.1:{direct['udp']}\n"
            "ingress:\n  - service: http_status:404\n"
        )
        log = tmp / "connector.log"
        connector = start(stack, [BIN / "burrow", "tunnel", "run", "--config", config, "ports"], log, env)
        wait_until(lambda: log.read_text().count("tunnel.registered") >= 4, "the connector", connector, log)
        yield direct


# --- the measurements -------------------------------------------------------------------


def tcp_echo_mbs(port: int, mb: int, cap: float) -> float:
    """MiB/s of one connection echoing `mb` MiB (sent and read back at once); the echo is checked."""
    block = os.urandom(MIB)
    sent, received, count = hashlib.sha256(), hashlib.sha256(), 0
    with socket.create_connection(("127.0.0.1", port), timeout=cap) as sock:
        started = time.monotonic()

        def send() -> None:
            for _ in range(mb):
                sock.sendall(block)
                sent.update(block)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        while data := sock.recv(MIB):
            received.update(data)
            count += len(data)
        sender.join()
        seconds = time.monotonic() - started
    if count != mb * MIB or sent.digest() != received.digest():
        raise SystemExit(f"TCP echo on port {port}: {count} of {mb * MIB} bytes came back, or not the same bytes")
    return mb / seconds


def tcp_connections_per_second(port: int, connections: int, parallel: int, cap: float) -> float:
    """Connections/s, each: connect, one byte echoed, close."""
    deadline = time.monotonic() + cap

    def one(_: int) -> bool:
        if time.monotonic() > deadline:
            return False
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"x")
            return sock.recv(1) == b"x"

    started = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        done = sum(pool.map(one, range(connections)))
    return done / (time.monotonic() - started)


def udp_datagrams_per_second(port: int, datagrams: int, flows: int, window: int, size: int, cap: float) -> tuple[float, int]:
    """(datagrams echoed per second, datagrams lost) over `flows` flows keeping `window` in flight each."""
    per_flow = datagrams // flows
    deadline = time.monotonic() + cap

    def flow(index: int) -> tuple[int, int]:
        echoed = lost = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(UDP_LOSS_TIMEOUT)
            sock.connect(("127.0.0.1", port))
            sent, waiting = 0, set()
            while (sent < per_flow or waiting) and time.monotonic() < deadline:
                while sent < per_flow and len(waiting) < window:
                    sock.send(b"%d:" % sent + bytes(size))
                    waiting.add(sent)
                    sent += 1
                try:
                    waiting.discard(int(sock.recv(65535).split(b":", 1)[0]))
                    echoed += 1
                except TimeoutError:
                    lost, waiting = lost + len(waiting), set()
        return echoed, lost

    started = time.monotonic()
    with ThreadPoolExecutor(flows) as pool:
        results = list(pool.map(flow, range(flows)))
    seconds = time.monotonic() - started
    return sum(e for e, _ in results) / seconds, sum(lost for _, lost in results)


def measure(direct: dict, args: argparse.Namespace) -> list[dict]:
    rows = []
    for metric, unit, run in (
        (f"TCP echo, 1 connection, {args.mb} MiB", "MiB/s", lambda tcp, udp: tcp_echo_mbs(tcp, args.mb, args.cap)),
        (f"TCP connect + 1-byte echo, {args.parallel} at a time", "conn/s",
         lambda tcp, udp: tcp_connections_per_second(tcp, args.connections, args.parallel, args.cap)),
        (f"UDP echo, {args.flows} flows × {args.window} in flight, {args.size} B", "datagrams/s",
         lambda tcp, udp: udp_datagrams_per_second(udp, args.datagrams, args.flows, args.window, args.size, args.cap)),
    ):  # fmt: skip
        figures = {}
        for where, (tcp, udp) in (("direct", (direct["tcp"], direct["udp"])), ("tunnel", (direct["public"],) * 2)):
            value, lost = result if isinstance(result := run(tcp, udp), tuple) else (result, None)
            figures[where] = value
            if lost is not None:
                figures[f"{where}_lost"] = lost
        rows.append({"metric": metric, "unit": unit, **figures, "ratio": figures["tunnel"] / figures["direct"]})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"| {'measure':<48} | {'unit':<11} | {'direct':>10} | {'tunnel':>10} | {'tunnel/direct':>13} |")
    print(f"|{'-' * 50}|{'-' * 13}|{'-' * 12}|{'-' * 12}|{'-' * 15}|")
    for row in rows:
        print(f"| {row['metric']:<48} | {row['unit']:<11} | {row['direct']:>10.1f} | {row['tunnel']:>10.1f} | {row['ratio']:>12.2f}× |")
    for row in rows:
        if "tunnel_lost" in row:
            print(f"UDP datagrams lost: direct {row['direct_lost']}, tunnel {row['tunnel_lost']}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="MiB echoed on one TCP connection")
    parser.add_argument("--connections", type=int, default=2000, help="TCP connections opened")
    parser.add_argument("--parallel", type=int, default=20, help="TCP connections at a time")
    parser.add_argument("--datagrams", type=int, default=50_000, help="UDP datagrams sent")
    parser.add_argument("--flows", type=int, default=50, help="UDP flows (client sockets)")
    parser.add_argument("--window", type=int, default=8, help="datagrams each flow keeps in flight")
    parser.add_argument("--size", type=int, default=200, help="bytes of each datagram")
    parser.add_argument("--cap", type=float, default=120.0, help="seconds any one measurement may take")
    parser.add_argument("--serve-echo", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.serve_echo is not None:
        serve_echo(args.serve_echo)
        return 0
    with running_stack() as direct:
        rows = measure(direct, args)
    print_table(rows)
    print(json.dumps({"rows": rows, "args": {k: v for k, v in vars(args).items() if k != "serve_echo"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
