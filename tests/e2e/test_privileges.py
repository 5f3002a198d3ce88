"""Issue 7, least privilege: `burrow-edge serve --user` binds every port as root, then runs
as that user, and still serves visitors through tunnels; `init --dns-listen off` runs an
edge without its DNS server."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.e2e.conftest import ZONE, Edge, free_port, start_edge, start_origin
from tests.e2e.test_management import one_line_error
from tests.e2e.tunnels import run_tunnel

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping root needs the tests to run as root")
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def world_tmp():
    """A temporary directory `nobody` may traverse (pytest's own are 0700, owned by root)."""
    path = Path(tempfile.mkdtemp(prefix="burrow-priv-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ids(pid: int, field: str) -> list[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return [int(value) for value in re.search(rf"^{field}:\s+(.*)$", status, re.M).group(1).split()]


@as_root
def test_serve_as_nobody_after_binding(world_tmp):
    metrics_port = free_port()
    edge = start_edge(world_tmp, serve_args=("--user", "nobody", "--metrics", f"127.0.0.1:{metrics_port}"))
    try:
        edge.proc.wait_for_log(r"edge\.privileges_dropped user=nobody")
        assert ids(edge.proc.pid, "Uid") == [NOBODY.pw_uid] * 4  # real, effective, saved, filesystem
        assert ids(edge.proc.pid, "Gid") == [NOBODY.pw_gid] * 4
        assert re.search(r"^Groups:\s*$", Path(f"/proc/{edge.proc.pid}/status").read_text(), re.M)
        assert all(path.stat().st_uid == NOBODY.pw_uid for path in [edge.home, *edge.home.rglob("*")])

        origin, origin_port = start_origin(world_tmp, edge.env)
        edge.procs.append(origin)
        run_tunnel(edge, "alice", [("app", f"http://127.0.0.1:{origin_port}")])
        result = edge.curl(f"app.{ZONE}", "/hello", "-w", "%{http_code}")
        assert result.returncode == 0 and result.stdout.endswith(b"200"), result
        env = edge.login("bob")  # the registry stays writable: an API write as nobody
        edge.cli("burrow", "tunnel", "create", "after-drop", env=env)
    finally:
        for proc in reversed(edge.procs):
            proc.stop()


@as_root
def test_user_refused_clearly(tmp_path):
    edge = Edge(tmp_path, dict(os.environ), None, 0, 0, 0, tmp_path)
    home = tmp_path / "edge"
    edge.cli("burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca",
             "--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0")
    one_line_error(edge.cli("burrow-edge", "serve", "--home", home, "--user", "no-such-user-x", check=False),
                   "user 'no-such-user-x' (--user or user: in edge.yml): no such user", 2)
    with open(home / "edge.yml", "a") as config:
        config.write("user: root\n")
    one_line_error(edge.cli("burrow-edge", "serve", "--home", home, check=False), "user 'root' is root", 2)


def test_dns_listen_off(world_tmp):
    home = world_tmp / "edge"
    env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
    edge = Edge(home, env, None, 0, 0, 0, world_tmp)
    edge.cli("burrow-edge", "init", "--home", home, "--zone", ZONE, "--public-ip", "127.0.0.1", "--dev-ca",
             "--https-listen", "127.0.0.1:0", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", "off")
    assert "dns-listen: 'off'" in (home / "edge.yml").read_text()
    init = ("burrow-edge", "init", "--zone", ZONE, "--public-ip", "127.0.0.1", "--home", world_tmp / "other")
    one_line_error(edge.cli(*init, "--dns-listen", "53", check=False), "invalid address '53': expected HOST:PORT or off", 2)
    acme = ("--acme-directory", "https://127.0.0.1:14000/dir", "--acme-email", "ops@example.test", "--dns-listen", "off")
    one_line_error(edge.cli(*init, *acme, check=False), "ACME needs the edge's DNS server", 2)
    proc = edge.start(["burrow-edge", "serve", "--home", home], "edge", env)
    try:
        proc.wait_for_log(r"edge\.listening")
        listening = (home / "listen.json").read_text()
        assert '"dns"' not in listening and '"https"' in listening
    finally:
        proc.stop()
