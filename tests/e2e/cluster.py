"""Several real edges sharing one real PostgreSQL registry, each on its own loopback address
(127.0.0.11, .12, …), with one dev CA and certificate (the first edge's, copied to the others)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.conftest import BIN, START_TIMEOUT, ZONE, Edge, Proc, wait_until
from tests.pg import PgServer

EDGE_IPS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")


@dataclass
class ClusterEdge(Edge):
    ip: str = "127.0.0.1"
    name: str = ""
    serve_args: tuple = ()

    @property
    def url(self) -> str:
        return f"https://{self.ip}:{self.https_port}"

    def curl(self, host: str, path: str = "/", *extra: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                "curl", "-sS", "--http1.1", "--max-time", str(timeout), "--cacert", str(self.ca),
                "--resolve", f"{host}:{self.https_port}:{self.ip}", *extra, f"https://{host}:{self.https_port}{path}",
            ],
            capture_output=True, timeout=timeout + 10,
        )

    def dig(self, name: str, rtype: str = "A") -> list[str]:
        """`dig +short` against this edge's DNS server, sorted."""
        result = subprocess.run(
            ["dig", f"@{self.ip}", "-p", str(self.dns_port), "+short", "+tries=1", "+time=2", name, rtype],
            capture_output=True, text=True, timeout=10, check=True,
        )
        return sorted(result.stdout.split())

    def serve(self) -> None:
        """(Re)start `burrow-edge serve`; returns once it listens."""
        listen = self.home / "listen.json"
        listen.unlink(missing_ok=True)
        self.proc = Proc([BIN / "burrow-edge", "serve", "--home", self.home, *self.serve_args], self.tmp / f"{self.name}.log", self.env)
        self.procs.append(self.proc)
        wait_until(lambda: listen.exists() or not self.proc.alive(), START_TIMEOUT, f"{self.name} to listen")
        addresses = json.loads(listen.read_text())
        self.https_port, self.tunnel_port, self.dns_port = (int(addresses[k].rsplit(":", 1)[1]) for k in ("https", "tunnel", "dns"))


@dataclass
class Cluster:
    pg: PgServer
    database: str
    tmp: Path
    serve_args: tuple = ()
    edges: list[ClusterEdge] = field(default_factory=list)

    def add_edge(self, ip: str) -> ClusterEdge:
        """`burrow-edge init` and `serve` one more edge on `ip`, sharing the database; returns once it listens."""
        number = len(self.edges) + 1
        env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
        env["BURROW_HOME"] = str(self.tmp / "nobody")
        name, home = f"edge-{number}", self.tmp / f"edge-{number}"
        subprocess.run(
            [
                BIN / "burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", ip, *(["--dev-ca"] if number == 1 else []),
                "--https-listen", f"{ip}:0", "--tunnel-listen", f"{ip}:0", "--dns-listen", f"{ip}:0",
                "--database", self.pg.url(self.database, tcp=True), "--edge-name", name,
            ],
            check=True, capture_output=True, env=env,
        )
        if number > 1:  # every edge presents the same certificate
            first = self.edges[0].home
            shutil.copytree(first / "certs", home / "certs", dirs_exist_ok=True)
            shutil.copy(first / "ca.pem", home / "ca.pem")
        edge = ClusterEdge(home, env, None, 0, 0, 0, self.tmp, ip=ip, name=name, serve_args=self.serve_args)
        edge.serve()
        self.edges.append(edge)
        return edge

    def stop(self) -> None:
        for edge in self.edges:
            for proc in reversed(edge.procs):
                proc.stop()


def start_cluster(
    tmp: Path, pg: PgServer, ips: tuple[str, ...] = EDGE_IPS, serve_args: tuple = (), database: str | None = None
) -> Cluster:
    """An edge serving on each address, sharing `database` on `pg` (default: a fresh one)."""
    cluster = Cluster(pg, database or pg.create_database(), tmp, serve_args)
    for ip in ips:
        cluster.add_edge(ip)
    return cluster
