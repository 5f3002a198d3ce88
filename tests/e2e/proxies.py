"""Real egress proxies for tests and benchmarks: tinyproxy (HTTP CONNECT, BasicAuth) and danted
(SOCKS5), each started as a process with a temporary config, and a topology where the
connector reaches the edge only through them.

    conn (connector, origin)  ──veth──  proxy (tinyproxy, danted; no forwarding)  ──veth──  edge (edge, curl)
    198.18.64.2/24                       198.18.64.1 | 198.18.65.2                          198.18.65.1/24
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e import netns
from tests.e2e.conftest import START_TIMEOUT, Proc, wait_until

CONN_IP, PROXY_INNER_IP = "198.18.64.2", "198.18.64.1"
PROXY_OUTER_IP, EDGE_IP = "198.18.65.2", "198.18.65.1"
TINYPROXY_PORT, DANTE_PORT = 8888, 1080
PROXY_USER, PROXY_PASSWORD = "burrow", "s3cret-Pr0xy"


class EgressTopology(netns.Namespaces):
    """The picture above: `proxy` does not forward packets, so only its proxies connect `conn` and `edge`."""

    ROLES = ("conn", "proxy", "edge")

    def create(self) -> None:
        super().create()
        p, proxy = self.prefix, self.name("proxy")
        self.link(((self.name("conn"), f"{p}c0", (f"{CONN_IP}/24",)), (proxy, f"{p}c1", (f"{PROXY_INNER_IP}/24",))))
        self.link(((proxy, f"{p}e1", (f"{PROXY_OUTER_IP}/24",)), (self.name("edge"), f"{p}e0", (f"{EDGE_IP}/24",))))
        self.run(proxy, "sysctl", "-qw", "net.ipv4.ip_forward=0")


def wait_listening(topo: netns.Namespaces, ns: str, host: str, port: int, proc: Proc, what: str) -> None:
    def up() -> bool:
        if not proc.alive():
            raise AssertionError(f"{what} exited:\n{proc.log()}")
        return topo.run(ns, "nc", "-z", "-w", "1", host, str(port), check=False).returncode == 0

    wait_until(up, START_TIMEOUT, what)


def tinyproxy_argv(tmp: Path, listen: str, port: int, user: str | None = PROXY_USER, password: str = PROXY_PASSWORD) -> list[str]:
    """tinyproxy in the foreground, logging each CONNECT to stdout; BasicAuth when `user` is given."""
    config = tmp / f"tinyproxy-{port}.conf"
    lines = [f"Port {port}", f"Listen {listen}", "Timeout 600", "MaxClients 200", "LogLevel Connect"]
    if user is not None:
        lines.append(f"BasicAuth {user} {password}")
    config.write_text("\n".join(lines) + "\n")
    return ["tinyproxy", "-d", "-c", str(config)]


def danted_argv(tmp: Path, listen: str, port: int, external: str, clients: str) -> list[str]:
    """danted (one process) in the foreground, SOCKS5 CONNECT without authentication for `clients` (a CIDR)."""
    config = tmp / f"danted-{port}.conf"
    config.write_text(
        "logoutput: stderr\n"
        f"internal: {listen} port = {port}\n"
        f"external: {external}\n"
        "clientmethod: none\nsocksmethod: none\n"
        "user.privileged: root\nuser.unprivileged: nobody\n"
        f"client pass {{\n  from: {clients} to: 0.0.0.0/0\n  log: connect\n}}\n"
        f"socks pass {{\n  from: {clients} to: 0.0.0.0/0\n  command: connect\n  log: connect\n}}\n"
    )
    return ["danted", "-f", str(config), "-p", str(tmp / f"danted-{port}.pid"), "-N", "1"]


def start_proxies(topo: EgressTopology, tmp: Path, env: dict, procs: list) -> tuple[Proc, Proc]:
    """tinyproxy and danted in `proxy`, listening on PROXY_INNER_IP; (tinyproxy, danted)."""
    proxy = topo.name("proxy")
    tiny = Proc(topo.exec(proxy, *tinyproxy_argv(tmp, PROXY_INNER_IP, TINYPROXY_PORT)), tmp / "tinyproxy.log", env)
    procs.append(tiny)
    dante = Proc(topo.exec(proxy, *danted_argv(tmp, PROXY_INNER_IP, DANTE_PORT, PROXY_OUTER_IP, f"{CONN_IP}/32")),
                 tmp / "danted.log", env)
    procs.append(dante)
    wait_listening(topo, proxy, PROXY_INNER_IP, TINYPROXY_PORT, tiny, "tinyproxy")
    wait_listening(topo, proxy, PROXY_INNER_IP, DANTE_PORT, dante, "danted")
    return tiny, dante


def http_proxy_url(user: str = PROXY_USER, password: str = PROXY_PASSWORD) -> str:
    return f"http://{user}:{password}@{PROXY_INNER_IP}:{TINYPROXY_PORT}"


SOCKS_PROXY_URL = f"socks5://{PROXY_INNER_IP}:{DANTE_PORT}"


def check_call(argv: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
