"""Private networks in network namespaces, for tests/e2e/test_private_networks.py and bench/socks_bench.py.

    client ──── edge ──── conn ──── office: nginx .10, sshd .22, dnsmasq .53 (198.18.5.0/24)
    .6.2      .6.1 .7.1   .7.2 .5.1          and nginx on 198.18.12.10 (a second subnet on the same link)
                   .8.1 ── conn2 ── lab2: an HTTP server on 198.18.9.10
                           .8.2 .9.1

The client reaches only the edge; the office and lab2 networks are reachable only
from the connectors' namespaces (no namespace forwards), so a byte that reaches a
private server came through a connector. Each connector namespace has one route
to the edge's public address. Addresses: 198.18.0.0/15 only.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e import netns
from tests.e2e.conftest import BIN, REPO, START_TIMEOUT, ZONE, Proc, wait_until

EDGE_IP, CLIENT_IP = "198.18.6.1", "198.18.6.2"
EDGE_CONN_IP, CONN_IP = "198.18.7.1", "198.18.7.2"
EDGE_CONN2_IP, CONN2_IP = "198.18.8.1", "198.18.8.2"
OFFICE_GW, WEB, SSH, DNS = "198.18.5.1", "198.18.5.10", "198.18.5.22", "198.18.5.53"
PLAIN_GW, PLAIN_WEB = "198.18.12.1", "198.18.12.10"
LAB_GW, LAB_WEB = "198.18.9.1", "198.18.9.10"
OFFICE_NET, PLAIN_NET, LAB_NET = "198.18.5.0/24", "198.18.12.0/24", "198.18.9.0/24"
PRINTER = "printer.office.test"  # dnsmasq answers it with WEB
HTTPS_PORT, TUNNEL_PORT = 8443, 7844
SOCKS_PORT = 1080
RECORDED_PORT = 7000  # every private address listens here and records each connection (tests/e2e/accept_recorder.py)
METRICS_PORT = 9400  # the edge's, on the edge namespace's loopback
NGINX = "/usr/sbin/nginx"
SSHD = "/usr/sbin/sshd"


class PrivateTopology(netns.Namespaces):
    ROLES = ("client", "edge", "conn", "office", "conn2", "lab2")

    def create(self) -> None:
        super().create()
        p, n = self.prefix, self.name
        self.link(((n("client"), f"{p}c0", (f"{CLIENT_IP}/24",)), (n("edge"), f"{p}c1", (f"{EDGE_IP}/24",))))
        self.link(((n("conn"), f"{p}k0", (f"{CONN_IP}/24",)), (n("edge"), f"{p}k1", (f"{EDGE_CONN_IP}/24",))))
        self.link(((n("conn2"), f"{p}m0", (f"{CONN2_IP}/24",)), (n("edge"), f"{p}m1", (f"{EDGE_CONN2_IP}/24",))))
        self.link(((n("conn"), f"{p}o0", (f"{OFFICE_GW}/24", f"{PLAIN_GW}/24")),
                   (n("office"), f"{p}o1", (f"{WEB}/24", f"{SSH}/24", f"{DNS}/24", f"{PLAIN_WEB}/24"))))
        self.link(((n("conn2"), f"{p}l0", (f"{LAB_GW}/24",)), (n("lab2"), f"{p}l1", (f"{LAB_WEB}/24",))))
        self.run(n("conn"), "ip", "route", "add", f"{EDGE_IP}/32", "via", EDGE_CONN_IP)
        self.run(n("conn2"), "ip", "route", "add", f"{EDGE_IP}/32", "via", EDGE_CONN2_IP)


@dataclass
class Lab:
    topo: PrivateTopology
    tmp: Path
    env: dict
    procs: list = field(default_factory=list)
    big_sha256: str = ""
    big_size: int = 0

    def ns(self, role: str) -> str:
        return self.topo.name(role)

    def start(self, role: str, args: list, name: str, env: dict | None = None, cwd: Path | None = None) -> Proc:
        proc = Proc(self.topo.exec(self.ns(role), *map(str, args)), self.tmp / f"{name}.log", env or self.env, cwd=cwd)
        self.procs.append(proc)
        return proc

    def run(self, role: str, *args, env: dict | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(self.topo.exec(self.ns(role), *map(str, args)), capture_output=True, text=True,
                                env=env or self.env, timeout=timeout)  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"{args} in {role} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def burrow(self, role: str, home: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(role, BIN / "burrow", *args, env={**self.env, "BURROW_HOME": str(home)}, check=check)

    def home(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(exist_ok=True)
        return path

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.topo.destroy()

    # The edge, accounts, tunnels --------------------------------------------------------

    def start_edge(self) -> None:
        home = self.tmp / "edge"
        subprocess.run(
            [BIN / "burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", EDGE_IP, "--dev-ca",
             "--https-listen", f"0.0.0.0:{HTTPS_PORT}", "--tunnel-listen", f"0.0.0.0:{TUNNEL_PORT}", "--dns-listen", "off"],
            check=True, capture_output=True, env=self.env,
        )  # fmt: skip
        edge = self.start("edge", [BIN / "burrow-edge", "serve", "--home", home, "--metrics", f"127.0.0.1:{METRICS_PORT}"], "edge")
        wait_until(lambda: (home / "listen.json").exists() or not edge.alive(), START_TIMEOUT, "the edge")
        assert edge.alive(), edge.log()
        self.edge, self.edge_home = edge, home

    def account(self, name: str) -> Path:
        """A connector home logged in (from the client namespace) as a new account."""
        token = subprocess.run([BIN / "burrow-edge", "account", "create", name, "--home", self.edge_home],
                               check=True, capture_output=True, text=True, env=self.env).stdout.splitlines()[-1]  # fmt: skip
        home = self.home(f"home-{name}")
        self.burrow("client", home, "tunnel", "login", f"https://{EDGE_IP}:{HTTPS_PORT}", "--token", token,
                    "--ca-file", self.edge_home / "ca.pem")  # fmt: skip
        (home / "token").write_text(token + "\n")
        (home / "token").chmod(0o600)
        return home

    def run_connector(self, role: str, home: Path, tunnel: str, warp: str | None) -> Proc:
        """`burrow tunnel run` for `tunnel` in `role`'s namespace; `warp` is the config's warp-routing mapping."""
        config = home / f"{tunnel}.yml"
        config.write_text(f"tunnel: {tunnel}\n" + (f"warp-routing: {warp}\n" if warp else "")
                          + "ingress:\n  - service: http_status:404\n")  # fmt: skip
        proc = self.start(role, [BIN / "burrow", "tunnel", "run", "--config", config, tunnel], f"connector-{tunnel}",
                          {**self.env, "BURROW_HOME": str(home)})  # fmt: skip
        proc.wait_for_log(r"tunnel\.registered index=", count=4)
        return proc

    def socks(self, home: Path, *args: str, port: int = SOCKS_PORT) -> Proc:
        """`burrow access socks` in the client namespace."""
        proc = self.start("client", [BIN / "burrow", "access", "socks", "--listen", f"127.0.0.1:{port}", *args],
                          f"socks-{port}", {**self.env, "BURROW_HOME": str(home)})  # fmt: skip
        proc.wait_for_log(r"socks\.listening")
        return proc

    # Private servers ----------------------------------------------------------------------

    def start_office(self, big_mib: int) -> None:
        """nginx (with a random `big` file of `big_mib` MiB), sshd and dnsmasq in the office namespace."""
        www = self.home("www")
        (www / "index.html").write_text("office\n")
        digest = hashlib.sha256()
        with open(www / "big", "wb") as out:
            for _ in range(big_mib):
                chunk = os.urandom(1 << 20)
                digest.update(chunk)
                out.write(chunk)
        self.big_sha256, self.big_size = digest.hexdigest(), big_mib << 20
        conf = self.tmp / "nginx.conf"
        conf.write_text(
            f"daemon off;\nuser root;\nworker_processes 1;\npid {self.tmp}/nginx.pid;\nerror_log {self.tmp}/nginx-error.log;\n"
            f"events {{ worker_connections 512; }}\nhttp {{\n  access_log {self.tmp}/nginx-access.log;\n"
            f"  client_body_temp_path {self.tmp}/nginx-body;\n  default_type text/plain;\n"
            f"  server {{ listen 80 reuseport; root {www}; }}\n}}\n"
        )
        self.start("office", [NGINX, "-c", conf, "-p", self.tmp], "nginx")
        self.start("office", ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces", f"--listen-address={DNS}",
                              f"--address=/{PRINTER}/{WEB}", "--log-queries", "--log-facility=-", "--user=root", "--pid-file="], "dnsmasq")  # fmt: skip
        self.sshd_key = self._start_sshd()
        self.start("lab2", [sys.executable, "-m", "http.server", "80", "--bind", LAB_WEB, "--directory", self.lab_www()],
                   "lab-web", cwd=REPO)  # fmt: skip
        for role, addresses in (("office", [WEB, PLAIN_WEB]), ("lab2", [LAB_WEB])):
            self.start(role, [sys.executable, "-m", "tests.e2e.accept_recorder", RECORDED_PORT, *addresses],
                       f"recorder-{role}", cwd=REPO).wait_for_log("recording")  # fmt: skip
        for role, address, port in (("conn", WEB, 80), ("conn", SSH, 22), ("conn2", LAB_WEB, 80)):
            wait_until(lambda: self.run(role, "nc", "-z", "-w", "1", address, str(port), check=False).returncode == 0,
                       START_TIMEOUT, f"{address}:{port}")  # fmt: skip

    def lab_www(self) -> Path:
        www = self.home("lab-www")
        (www / "index.html").write_text("lab2\n")
        return www

    def _start_sshd(self) -> Path:
        keys = self.home("sshd")
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / key)], check=True)
        authorized = keys / "authorized_keys"
        authorized.write_text((keys / "client_key.pub").read_text())
        authorized.chmod(0o600)
        config = keys / "sshd_config"
        config.write_text(
            f"Port 22\nListenAddress {SSH}\nHostKey {keys / 'host_key'}\nPidFile {keys / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {authorized}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"UsePAM no\nStrictModes no\nLogLevel VERBOSE\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        self.start("office", [SSHD, "-D", "-e", "-f", config], "sshd")
        return keys / "client_key"

    def edge_metrics(self) -> str:
        return self.run("edge", "curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{METRICS_PORT}/metrics").stdout

    def private_log(self) -> str:
        """Everything the private servers recorded so far (nginx's access log, dnsmasq's queries, sshd,
        the connections the recorders accepted)."""
        logs = [self.tmp / name for name in ("nginx-access.log", "dnsmasq.log", "sshd.log", "lab-web.log",
                                             "recorder-office.log", "recorder-lab2.log")]  # fmt: skip
        return "".join(path.read_text(errors="replace") for path in logs if path.exists())


def make_lab(tmp: Path, prefix: str) -> Lab:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
    env["BURROW_HOME"] = str(tmp / "nobody")
    topo = PrivateTopology(prefix)
    topo.create()
    return Lab(topo, tmp, env)
