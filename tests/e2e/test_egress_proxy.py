"""A connector whose only way to the edge is a real proxy: tinyproxy (HTTP CONNECT with
BasicAuth) or danted (SOCKS5), in network namespaces (tests/e2e/proxies.py); and NO_PROXY
on loopback. Issue 17, acceptance 4."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import netns, proxies
from tests.e2e.conftest import BIN, REPO, START_TIMEOUT, ZONE, Proc, free_port, start_edge, start_origin, wait_until

HOST = f"app.{ZONE}"
HTTPS_PORT, TUNNEL_PORT, DNS_PORT = 8443, 7844, 5353
EDGE_URL = f"https://{proxies.EDGE_IP}:{HTTPS_PORT}"


@dataclass
class Lab:
    topo: proxies.EgressTopology
    tmp: Path
    env: dict  # the connector's environment, without any proxy variable
    edge_home: Path
    edge: Proc
    tinyproxy: Proc
    danted: Proc
    procs: list

    @property
    def conn(self) -> str:
        return self.topo.name("conn")

    def burrow(self, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.topo.exec(self.conn, str(BIN / "burrow"), *args), capture_output=True, text=True,
                              env=env or self.env, timeout=timeout)

    def connector(self, name: str, *args: str, env: dict | None = None) -> Proc:
        proc = Proc(self.topo.exec(self.conn, str(BIN / "burrow"), "tunnel", "run", "--config", str(self.tmp / "home" / "config.yml"),
                                   "--grace-period", "1", *args, "egress-tunnel"),
                    self.tmp / f"{name}.log", env or self.env)
        self.procs.append(proc)
        return proc

    def curl(self, path: str = "/", *extra: str) -> subprocess.CompletedProcess:
        return self.topo.run(
            self.topo.name("edge"), "curl", "-sS", "--http1.1", "--max-time", "20", "--cacert", str(self.edge_home / "ca.pem"),
            "--resolve", f"{HOST}:{HTTPS_PORT}:{proxies.EDGE_IP}", "-w", "\n%{http_code}", *extra, f"https://{HOST}:{HTTPS_PORT}{path}",
            check=False, timeout=30,
        )

    def connects_seen(self, proxy: Proc, host: str, port: int) -> int:
        """Connections to host:port in tinyproxy's log (`CONNECT h:p`) or danted's (`-> … h.p`)."""
        return len(re.findall(rf"CONNECT {re.escape(host)}:{port} |tcp/connect .* {re.escape(host)}\.{port}$", proxy.log(), re.M))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = netns.netns_permitted()
    if reason is not None:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("egress")
    topo = proxies.EgressTopology(f"egp{os.getpid() % 100000}")
    procs: list[Proc] = []
    try:
        topo.create()
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("BURROW") and key.lower() not in ("https_proxy", "all_proxy", "no_proxy", "http_proxy")}
        env["BURROW_HOME"] = str(tmp / "home")
        (tmp / "home").mkdir()
        tiny, dante = proxies.start_proxies(topo, tmp, env, procs)
        edge_home = tmp / "edge"
        subprocess.run(
            [BIN / "burrow-edge", "init", "--home", edge_home, "--zone", ZONE, "--public-ip", proxies.EDGE_IP, "--dev-ca",
             "--https-listen", f"{proxies.EDGE_IP}:{HTTPS_PORT}", "--tunnel-listen", f"{proxies.EDGE_IP}:{TUNNEL_PORT}",
             "--dns-listen", f"{proxies.EDGE_IP}:{DNS_PORT}"],
            check=True, capture_output=True, env=env,
        )
        edge = Proc(topo.exec(topo.name("edge"), str(BIN / "burrow-edge"), "serve", "--home", str(edge_home)), tmp / "edge.log", env)
        procs.append(edge)
        wait_until(lambda: (edge_home / "listen.json").exists() or not edge.alive(), START_TIMEOUT, "the edge")
        token = subprocess.run([BIN / "burrow-edge", "account", "create", "egress", "--home", edge_home],
                               check=True, capture_output=True, text=True, env=env).stdout.splitlines()[-1]
        lab = Lab(topo, tmp, env, edge_home, edge, tiny, dante, procs)
        via_proxy = {**env, "HTTPS_PROXY": proxies.http_proxy_url()}  # the management calls go through tinyproxy too
        for args in (("tunnel", "login", EDGE_URL, "--token", token, "--ca-file", str(edge_home / "ca.pem")),
                     ("tunnel", "create", "egress-tunnel"), ("tunnel", "route", "dns", "egress-tunnel", HOST)):
            result = lab.burrow(*args, env=via_proxy)
            assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
        port_file = tmp / "origin.port"
        origin = Proc(topo.exec(lab.conn, sys.executable, "-m", "tests.e2e.origin", str(port_file)), tmp / "origin.log", env, cwd=REPO)
        procs.append(origin)
        wait_until(port_file.exists, START_TIMEOUT, "the origin")
        (tmp / "home" / "config.yml").write_text(
            f"tunnel: egress-tunnel\ningress:\n  - hostname: {HOST}\n    service: http://127.0.0.1:{port_file.read_text()}\n"
            "  - service: http_status:404\n"
        )
        yield lab
    finally:
        for proc in reversed(procs):
            proc.stop()
        topo.destroy()


def _serves_through(lab: Lab, connector: Proc, proxy: Proc) -> None:
    connector.wait_for_log(r"tunnel\.registered index=", count=4)
    result = lab.curl("/hello")
    assert result.stdout.rsplit("\n", 1)[1] == "200", result.stderr
    assert '"target": "/hello"' in result.stdout
    assert lab.connects_seen(proxy, proxies.EDGE_IP, TUNNEL_PORT) >= 4
    assert f"peer={proxies.PROXY_OUTER_IP}:" in lab.edge.log()  # the edge sees only the proxy


def test_the_connector_cannot_reach_the_edge_directly(lab):
    direct = lab.topo.run(lab.conn, "nc", "-z", "-w", "2", proxies.EDGE_IP, str(TUNNEL_PORT), check=False)
    assert direct.returncode != 0, "the connector's namespace reaches the edge without a proxy"


def test_management_calls_went_through_tinyproxy(lab):
    assert lab.connects_seen(lab.tinyproxy, proxies.EDGE_IP, HTTPS_PORT) >= 3  # login, create, route


def test_http_connect_proxy_from_config_yml(lab):
    config = lab.tmp / "home" / "config.yml"
    original = config.read_text()
    config.write_text(original + f"proxy: {proxies.http_proxy_url()}\n")
    try:
        connector = lab.connector("connector-http")
        _serves_through(lab, connector, lab.tinyproxy)
        log = connector.log()
        assert f"proxy=http://{proxies.PROXY_USER}:***@{proxies.PROXY_INNER_IP}:{proxies.TINYPROXY_PORT}" in log
        assert proxies.PROXY_PASSWORD not in log
        connector.stop()
    finally:
        config.write_text(original)


def test_socks5_proxy_from_all_proxy(lab):
    socks_env = {**lab.env, "ALL_PROXY": proxies.SOCKS_PROXY_URL}
    listed = lab.burrow("tunnel", "list", env=socks_env)  # httpx's SOCKS5 client, chosen the same way
    assert listed.returncode == 0 and "egress-tunnel" in listed.stdout, listed.stderr
    assert lab.connects_seen(lab.danted, proxies.EDGE_IP, HTTPS_PORT) == 1
    connector = lab.connector("connector-socks", env=socks_env)
    _serves_through(lab, connector, lab.danted)
    download = lab.curl("/download?mb=8", "-o", "/dev/null", "-w", "%{http_code} %{size_download}")
    assert download.stdout.split() == ["200", str(8 << 20)], download.stderr
    connector.stop()


def test_wrong_proxy_password_is_one_clear_error(lab):
    wrong = proxies.http_proxy_url(password="not-the-password")
    before = lab.connects_seen(lab.tinyproxy, proxies.EDGE_IP, TUNNEL_PORT)
    started = time.monotonic()
    result = lab.burrow("tunnel", "run", "--proxy", wrong, "--loglevel", "debug", "egress-tunnel", timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert time.monotonic() - started < 15
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert errors == [f"error: proxy http://{proxies.PROXY_USER}:***@{proxies.PROXY_INNER_IP}:{proxies.TINYPROXY_PORT} "
                      "rejected the user name or password (401 Unauthorized)"], output
    assert "Traceback" not in output and "not-the-password" not in output
    assert lab.connects_seen(lab.tinyproxy, proxies.EDGE_IP, TUNNEL_PORT) - before <= 4  # one try per connection

    listed = lab.burrow("tunnel", "list", env={**lab.env, "HTTPS_PROXY": wrong})
    assert listed.returncode == 3, listed.stdout + listed.stderr
    assert listed.stderr.strip().splitlines() == [
        f"error: proxy http://{proxies.PROXY_USER}:***@{proxies.PROXY_INNER_IP}:{proxies.TINYPROXY_PORT} "
        "rejected the user name or password (401 Unauthorized)"
    ]


# Loopback: NO_PROXY sends the edge's address around the proxy --------------------


def test_no_proxy_bypasses_the_proxy(tmp_path):
    edge = start_edge(tmp_path)
    try:
        dead_proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens: any use of it fails
        token = edge.cli("burrow-edge", "account", "create", "bypass", "--home", edge.home).stdout.splitlines()[-1]
        env = {**edge.connector_env("bypass"), "HTTPS_PROXY": dead_proxy}

        refused = edge.cli("burrow", "tunnel", "login", edge.url, "--token", token, "--ca-file", edge.ca, env=env, check=False)
        assert refused.returncode == 4 and f"through proxy {dead_proxy}" in refused.stderr, refused.stderr

        env["NO_PROXY"] = "localhost, 127.0.0.0/8"
        edge.cli("burrow", "tunnel", "login", edge.url, "--token", token, "--ca-file", edge.ca, env=env)
        edge.cli("burrow", "tunnel", "create", "bypass-tunnel", env=env)
        edge.cli("burrow", "tunnel", "route", "dns", "bypass-tunnel", HOST, env=env)
        origin, port = start_origin(tmp_path, env)
        edge.procs.append(origin)
        connector = edge.start(["burrow", "tunnel", "run", "--proxy", dead_proxy, "--url", f"http://127.0.0.1:{port}",
                                "bypass-tunnel"], "connector", env)
        connector.wait_for_log(r"tunnel\.registered index=", count=4)
        assert "proxy=none" in connector.log()
        assert edge.curl(HOST, "/").returncode == 0
        connector.stop()

        del env["NO_PROXY"]  # the same connector without the exemption keeps retrying, calmly
        retrying = edge.start(["burrow", "tunnel", "run", "--proxy", dead_proxy, "--url", f"http://127.0.0.1:{port}",
                               "bypass-tunnel"], "connector-retrying", env)
        retrying.wait_for_log(rf"tunnel\.retrying .*error=cannot reach proxy {re.escape(dead_proxy)}: Connection refused", count=4)
        time.sleep(2)
        assert len(re.findall(r"tunnel\.retrying", retrying.log())) <= 4 * 3  # backoff, not a tight loop
        assert "Traceback" not in retrying.log()
    finally:
        for proc in reversed(edge.procs):
            proc.stop()


@pytest.mark.parametrize("args, env, says", [
    (["--proxy", "ftp://bob:hunter2@proxy.example:21"], {}, "--proxy: 'ftp://bob:***@proxy.example:21' must be http://"),
    ([], {"HTTPS_PROXY": "http://bob:hunter2@proxy.example:99999"}, "$HTTPS_PROXY: 'http://bob:***@proxy.example:99999' has"),
])
def test_a_bad_proxy_url_is_one_line_without_the_password(tmp_path, args, env, says):
    clean = {key: value for key, value in os.environ.items() if key.lower() not in ("https_proxy", "all_proxy", "no_proxy")}
    result = subprocess.run([BIN / "burrow", "tunnel", "run", *args, "some-tunnel"], capture_output=True, text=True, timeout=30,
                            env={**clean, "BURROW_HOME": str(tmp_path), **env})
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {says}"), result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
