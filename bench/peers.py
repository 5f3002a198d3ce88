"""The servers the suite compares, each started in a temp dir on loopback.

One nginx (worker_processes 1) is the origin for every configuration (64-byte
/small, a sparse 256 MiB /blob file, /sink that discards a POST body) and also
every TLS front: nginx-tls proxies straight to the origin, ssh-R proxies to an
`ssh -R` port of a private sshd, pagekite proxies to a pagekite.py front end.
Burrow is the edge (`--workers N`) + connector through their CLIs (tunnel_bench.py's helpers).
A peer whose program is missing is skipped with a note, never faked.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import tunnel_bench
from prometheus_client.parser import text_string_to_metric_families
from tunnel_bench import BenchError, start, wait_until

HOST = tunnel_bench.HOSTNAME
SMALL_BODY = "0123456789abcdef" * 4  # 64 bytes
PAGEKITE_SECRET = "bench-only-secret"


class Unavailable(BenchError):
    """The peer's programs are not installed."""


@dataclass
class Front:
    """How a client reaches one configuration."""

    name: str
    port: int
    tls: bool = True
    h2_port: int | None = None  # where h2 is spoken, if not `port` (direct: h2c)
    ca_file: Path | None = None
    max_requests_per_conn: int | None = None  # h2load does not reconnect after GOAWAY
    watched: dict[str, int] = field(default_factory=dict)  # label -> pid whose peak RSS is reported
    metrics_port: int | None = None  # Burrow's edge: its /metrics

    def url(self, path: str, h2: bool = False) -> str:
        port = self.h2_port if h2 and self.h2_port else self.port
        return f"{'https' if self.tls else 'http'}://{HOST}:{port}{path}"

    def speaks_h2(self) -> bool:
        return self.tls or self.h2_port is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def answers(front: Front, path: str = "/small") -> bool:
    """One curl GET through `front` returns 200."""
    tls = ["--cacert", str(front.ca_file)] if front.ca_file else ["-k"]
    done = subprocess.run(
        ["curl", "-s", "-o", os.devnull, "-w", "%{http_code}", "--max-time", "3",
         "--resolve", f"{HOST}:{front.port}:127.0.0.1", *tls, front.url(path)],
        capture_output=True, text=True,
    )
    return done.stdout.strip() == "200"


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  sendfile on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  client_max_body_size 0;
  ssl_certificate {tmp}/front.pem;
  ssl_certificate_key {tmp}/front.key;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_request_buffering off;
  proxy_max_temp_file_size 0;
  proxy_buffers 8 64k;
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
  upstream ssh_r {{ server 127.0.0.1:{ssh_r}; keepalive 64; }}
  upstream pagekite {{ server 127.0.0.1:{pagekite}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{origin};
    listen 127.0.0.1:{origin_h2c} http2;
    root {tmp}/www;
    location = /small {{ default_type text/plain; return 200 "{body}"; }}
    location = /sink {{ root {sink}; dav_methods PUT; client_body_temp_path {sink}/body; }}
  }}
  server {{ listen 127.0.0.1:{nginx_tls} ssl http2; location / {{ proxy_pass http://origin; }} }}
  server {{ listen 127.0.0.1:{ssh_front} ssl http2; location / {{ proxy_pass http://ssh_r; }} }}
  server {{ listen 127.0.0.1:{pagekite_front} ssl http2; location / {{ proxy_pass http://pagekite; }} }}
}}
"""

SSHD_CONF = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {tmp}/ssh_host_key
PidFile {tmp}/sshd.pid
AuthorizedKeysFile {tmp}/client_key.pub
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
"""


class Peers:
    """nginx for the whole run; each tunnel peer started into a caller's stack and work dir
    (every round starts it afresh); `fronts` maps a name to its current Front."""

    def __init__(self, stack: contextlib.ExitStack, tmp: Path, env: dict, blob_mb: int) -> None:
        self.stack, self.tmp, self.env, self.blob_mb = stack, tmp, env, blob_mb
        self.fronts: dict[str, Front] = {}
        self.ports = {name: free_port() for name in (
            "origin", "origin_h2c", "nginx_tls", "ssh_front", "ssh_r", "pagekite_front", "pagekite")}
        self.origin_port = self.ports["origin"]

    # ------------------------------------------------------------ nginx

    def start_nginx(self) -> None:
        """Origin + every TLS front; without nginx the suite cannot run."""
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if nginx is None:
            raise BenchError("nginx not found: `apt-get install -y nginx` (the origin for every configuration)")
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert(HOST)
        cert.private_key_pem.write_to_path(str(self.tmp / "front.key"))
        cert.cert_chain_pems[0].write_to_path(str(self.tmp / "front.pem"))
        ca.cert_pem.write_to_path(str(self.tmp / "front-ca.pem"))
        www = self.tmp / "www"
        www.mkdir()
        for readable in (self.tmp, www):  # nginx workers run as an unprivileged user when started as root
            readable.chmod(0o755)
        with (www / "blob").open("wb") as blob:
            blob.truncate(self.blob_mb * tunnel_bench.MIB)
        (www / "blob").chmod(0o644)  # whatever the umask
        conf = self.tmp / "nginx.conf"
        # /sink stores each upload (nginx reads the whole body before answering) in memory when it can
        sink = Path(self.stack.enter_context(tempfile.TemporaryDirectory(
            prefix="burrow-sink-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None)))
        sink.chmod(0o777)  # nginx workers run as an unprivileged user when started as root
        conf.write_text(NGINX_CONF.format(tmp=self.tmp, body=SMALL_BODY, sink=sink, **self.ports))
        log = self.tmp / "nginx.log"
        proc = start(self.stack, [nginx, "-c", str(conf), "-p", str(self.tmp)], log, self.env)
        wait_until(lambda: port_open(self.ports["nginx_tls"]), "nginx", proc, log)
        ca_file = self.tmp / "front-ca.pem"
        self.fronts["direct"] = Front("direct", self.ports["origin"], tls=False, h2_port=self.ports["origin_h2c"])
        self.fronts["nginx-tls"] = Front("nginx-tls", self.ports["nginx_tls"], ca_file=ca_file)
        self.front_ca = ca_file

    # ------------------------------------------------------------ ssh -R

    def start_ssh_r(self, stack: contextlib.ExitStack, work: Path) -> None:
        sshd, ssh, keygen = shutil.which("sshd") or "/usr/sbin/sshd", shutil.which("ssh"), shutil.which("ssh-keygen")
        if not (Path(sshd).exists() and ssh and keygen):
            raise Unavailable("openssh-server/openssh-client not installed")
        for key in ("ssh_host_key", "client_key"):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(work / key)], check=True)
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        conf = work / "sshd_config"
        conf.write_text(SSHD_CONF.format(port=free_port(), tmp=work))
        sshd_port = int(conf.read_text().split()[1])
        log = work / "sshd.log"
        proc = start(stack, [sshd, "-D", "-e", "-f", str(conf)], log, self.env)
        wait_until(lambda: port_open(sshd_port), "sshd", proc, log)
        remote = f"127.0.0.1:{self.ports['ssh_r']}:127.0.0.1:{self.origin_port}"
        cmd = [ssh, "-N", "-F", "/dev/null", "-i", str(work / "client_key"), "-p", str(sshd_port),
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
               "-o", "ExitOnForwardFailure=yes", "-R", remote, f"{getpass.getuser()}@127.0.0.1"]
        log = work / "ssh.log"
        client = start(stack, cmd, log, self.env)
        wait_until(lambda: port_open(self.ports["ssh_r"]), "ssh -R", client, log)
        self.fronts["ssh-R"] = Front("ssh-R", self.ports["ssh_front"], ca_file=self.front_ca,
                                     watched={"back": client.pid})

    # ------------------------------------------------------------ pagekite

    def start_pagekite(self, stack: contextlib.ExitStack, work: Path) -> None:
        pagekite = shutil.which("pagekite") or shutil.which("pagekite.py")
        if pagekite is None:
            raise Unavailable("pagekite not installed (`apt-get install -y pagekite`)")
        port = self.ports["pagekite"]
        common = ["--clean", "--nullui", "--logfile=stdio"]
        fe_log, be_log = work / "pagekite-fe.log", work / "pagekite-be.log"
        fe = start(stack, [pagekite, *common, "--isfrontend", f"--ports={port}", "--protos=http",
                                f"--domain=http:{HOST}:{PAGEKITE_SECRET}"], fe_log, self.env)
        wait_until(lambda: port_open(port), "pagekite front end", fe, fe_log)
        be = start(stack, [pagekite, *common, f"--frontend=127.0.0.1:{port}",
                                f"--service_on=http:{HOST}:127.0.0.1:{self.origin_port}:{PAGEKITE_SECRET}"],
                   be_log, self.env)
        front = Front("pagekite", self.ports["pagekite_front"], ca_file=self.front_ca,
                      watched={"front": fe.pid, "back": be.pid})
        wait_until(lambda: answers(front), "pagekite back end", be, be_log)
        self.fronts["pagekite"] = front

    # ------------------------------------------------------------ burrow

    def start_burrow(self, stack: contextlib.ExitStack, work: Path, name: str = "burrow", workers: int = 1,
                     sessions: int = tunnel_bench.HA_CONNECTIONS, serve_args: tuple[str, ...] = ()) -> None:
        """Edge (`--workers`, `--metrics` on a free port, `serve_args`) + connector (`sessions` HA
        connections), on the cores this process may use; `fronts[name]` once a request gets through."""
        home = work / "edge"
        env = {**self.env, "BURROW_HOME": str(work / "connector")}
        metrics = free_port()
        edge_port = tunnel_bench.start_edge(stack, home, env, (
            "--workers", str(workers), "--metrics", f"127.0.0.1:{metrics}", *serve_args))
        config = tunnel_bench.create_tunnel(work, home, edge_port, self.origin_port, env)
        tunnel_bench.start_connector(stack, work, config, env, sessions)
        front = Front(name, edge_port, ca_file=home / "ca.pem", max_requests_per_conn=1000, metrics_port=metrics,
                      watched={"front": _pid_of_cmd(f"serve --home {home}"), "back": _pid_of_cmd(f"--config {config}")})
        deadline = time.monotonic() + tunnel_bench.SETUP_TIMEOUT
        while not answers(front):
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: no 200 through the tunnel")
            time.sleep(0.1)
        if workers > 1:
            time.sleep(0.5)  # the workers know which holds which sessions
        self.fronts[name] = front


@contextlib.contextmanager
def cpu_affinity(cores: set[int]) -> Iterator[None]:
    """This process, and so every server it starts meanwhile, on `cores`; the previous set after."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass(frozen=True)
class EdgeCounts:
    """Burrow's edge, from its /metrics (every worker's, added up), since it started."""

    requests: float  # visitor requests answered
    forwarded: float  # of them, sent by one worker to another holding the tunnel's session
    per_worker: dict[str, float]  # worker index → requests it answered (`--workers` above 1 only)


def edge_counts(front: Front) -> EdgeCounts:
    assert front.metrics_port is not None, front.name
    with urllib.request.urlopen(f"http://127.0.0.1:{front.metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    total = lambda name: sum(sample.value for sample in samples if sample.name == name)  # noqa: E731
    per_worker = {sample.labels["worker"]: sample.value for sample in samples if sample.name == "burrow_edge_worker_requests_total"}
    return EdgeCounts(total("burrow_edge_requests_total"), total("burrow_edge_forwarded_requests_total"), per_worker)


def descendants(root: int = 0) -> list[int]:
    """Pids of every live descendant of `root` (default: this process)."""
    root = root or os.getpid()
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pid_of_cmd(fragment: str) -> int:
    """The one descendant whose command line contains `fragment` (0 if none)."""
    return next((pid for pid in descendants() if fragment in _cmdline(pid)), 0)
