"""A real edge, connector and origin as subprocesses on loopback, driven through the CLIs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
ZONE = "example.test"
START_TIMEOUT = 20.0


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections while the block runs: held bound and never
    listening, so no other test can start listening on it meanwhile (as it could on a `free_port()`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class Proc:
    """A background process whose stdout+stderr go to a log file."""

    def __init__(self, args: list, log_path: Path, env: dict, cwd: Path | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = START_TIMEOUT) -> str:
        def found():
            if self.popen.poll() is not None:
                raise AssertionError(f"process exited {self.popen.returncode}:\n{self.log()}")
            return len(re.findall(pattern, self.log())) >= count

        wait_until(found, timeout, f"{count}× {pattern!r} in {self.log_path.name}")
        return self.log()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def peak_rss_mib(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

    def stop(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


@dataclass
class Edge:
    home: Path
    env: dict
    proc: Proc
    https_port: int
    tunnel_port: int
    dns_port: int  # UDP and TCP
    tmp: Path
    procs: list = field(default_factory=list)
    tokens: dict = field(default_factory=dict)  # account name → its token, for accounts `login` created

    @property
    def ca(self) -> Path:
        return self.home / "ca.pem"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def cli(self, *args, check=True, timeout=60, env=None) -> subprocess.CompletedProcess:
        """Run `burrow-edge …` or `burrow …` (first arg names the program)."""
        result = subprocess.run(
            [str(BIN / args[0]), *map(str, args[1:])],
            capture_output=True, text=True, timeout=timeout, env=env or self.env,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def connector_env(self, name: str) -> dict:
        home = self.tmp / name
        home.mkdir(exist_ok=True)
        return {**self.env, "BURROW_HOME": str(home)}

    def login(self, account: str) -> dict:
        """A fresh connector home logged in as a new account."""
        created = self.cli("burrow-edge", "account", "create", account, "--home", self.home)
        token = self.tokens[account] = created.stdout.splitlines()[-1]
        env = self.connector_env(f"conn-{account}")
        self.cli("burrow", "tunnel", "login", self.url, "--token", token, "--ca-file", self.ca, env=env)
        return env

    def curl(self, host: str, path: str = "/", *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Real curl through the edge, with the dev CA and --resolve to loopback (HTTP/1.1
        unless `--http2` is among `extra`)."""
        if "--http2" not in extra:
            extra = ("--http1.1", *extra)
        return subprocess.run(
            [
                "curl", "-sS", "--max-time", str(timeout), "--cacert", str(self.ca),
                "--resolve", f"{host}:{self.https_port}:127.0.0.1",
                *extra, f"https://{host}:{self.https_port}{path}",
            ],
            capture_output=True, timeout=timeout + 10,
        )

    def start(self, args: list, name: str, env: dict) -> Proc:
        proc = Proc([str(BIN / args[0]), *map(str, args[1:])], self.tmp / f"{name}.log", env)
        self.procs.append(proc)
        return proc


def start_edge(tmp: Path, prepare=None, serve_args: tuple = (), init_args: tuple = ()) -> Edge:
    """`burrow-edge init` (with `init_args`) then `serve`; `prepare(home)` runs in between (e.g. to add certificates)."""
    # BURROW_PURE_PYTHON passes: the Makefile's pure-Python run reaches the edge and the connectors
    env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW") or key == "BURROW_PURE_PYTHON"}
    env["BURROW_HOME"] = str(tmp / "nobody")
    home = tmp / "edge"
    subprocess.run(
        [
            BIN / "burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca",
            "--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0", *init_args,
        ],
        check=True, capture_output=True, env=env,
    )
    if prepare is not None:
        prepare(home)
    proc = Proc([BIN / "burrow-edge", "serve", "--home", home, *serve_args], tmp / "edge.log", env)
    listen = home / "listen.json"
    wait_until(lambda: listen.exists() or not proc.alive(), START_TIMEOUT, "the edge to listen")
    addresses = json.loads(listen.read_text())
    https, tunnel, dns = (int(addresses[name].rsplit(":", 1)[1]) for name in ("https", "tunnel", "dns"))
    edge = Edge(home, env, proc, https, tunnel, dns, tmp)
    edge.procs.append(proc)
    return edge


def start_origin(tmp: Path, env: dict) -> tuple[Proc, int]:
    port_file = tmp / "origin.port"
    proc = Proc([sys.executable, "-m", "tests.e2e.origin", str(port_file)], tmp / "origin.log", env, cwd=REPO)
    wait_until(port_file.exists, START_TIMEOUT, "the origin to listen")
    return proc, int(port_file.read_text())


@dataclass
class Stack:
    edge: Edge
    env: dict  # alice's connector environment
    tunnel_id: str
    origin_port: int
    refused_port: int
    config: Path
    connector: Proc


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    edge = start_edge(tmp_path_factory.mktemp("stack"))
    yield edge
    for proc in reversed(edge.procs):
        proc.stop()


@pytest.fixture(scope="module")
def refused_port() -> Iterator[int]:
    with refusing_port() as port:
        yield port


@pytest.fixture(scope="module")
def stack(edge, refused_port):
    env = edge.login("alice")
    tunnel_id = edge.cli("burrow", "tunnel", "create", "my-web-tunnel", env=env).stdout.strip()
    edge.cli("burrow", "tunnel", "route", "dns", "my-web-tunnel", f"app.{ZONE}", env=env)
    edge.cli("burrow", "tunnel", "route", "dns", "my-web-tunnel", f"down.{ZONE}", env=env)
    origin, origin_port = start_origin(edge.tmp, env)
    edge.procs.append(origin)
    config = Path(env["BURROW_HOME"]) / "config.yml"
    config.write_text(
        f"tunnel: my-web-tunnel\n"
        f"ingress:\n"
        f"  - hostname: app.{ZONE}\n    service: http://127.0.0.1:{origin_port}\n"
        f"  - hostname: down.{ZONE}\n    service: http://127.0.0.1:{refused_port}\n"
        f"  - service: http_status:404\n"
    )
    connector = edge.start(["burrow", "tunnel", "run", "--config", config, "my-web-tunnel"], "connector", env)
    connector.wait_for_log(r"tunnel\.registered index=", count=4)
    return Stack(edge, env, tunnel_id, origin_port, refused_port, config, connector)
