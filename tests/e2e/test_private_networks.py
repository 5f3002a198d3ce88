"""Issue 17: private networks (`burrow tunnel route ip`, `warp-routing`, `burrow access socks`), with real
curl, ssh through `nc -X 5`, nginx, sshd and dnsmasq in network namespaces (tests/e2e/private_lab.py),
and on loopback for the connector's resolver and the CLI's errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
from socksio.socks5 import SOCKS5Command

from tests.e2e import netns
from tests.e2e.conftest import REPO, free_port, start_origin, wait_until
from tests.e2e.private_lab import (
    DNS,
    LAB_NET,
    LAB_WEB,
    OFFICE_NET,
    PLAIN_NET,
    PLAIN_WEB,
    PRINTER,
    RECORDED_PORT,
    SOCKS_PORT,
    SSH,
    WEB,
    Lab,
    make_lab,
)
from tests.e2e.socks_client import connect, socks_open
from tests.e2e.tunnels import ReportHandler, start_server

REFUSAL_LIMIT = 2.0  # seconds: every refusal is answered within this
BIG_MIB = 200
NOT_ALLOWED, NETWORK_UNREACHABLE, ADDRESS_TYPE_NOT_SUPPORTED = 2, 3, 8


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = netns.netns_permitted()
    if reason is not None:
        pytest.skip(reason)
    lab: Lab = make_lab(tmp_path_factory.mktemp("private"), f"pn{os.getpid() % 100000}")
    try:
        lab.start_edge()
        lab.start_office(BIG_MIB)
        alice, bob = lab.account("alice"), lab.account("bob")
        for tunnel in ("office", "lab", "plain"):
            lab.burrow("client", alice, "tunnel", "create", tunnel)
        lab.burrow("client", alice, "tunnel", "route", "ip", "add", OFFICE_NET, "office", "--comment", "office LAN")
        lab.burrow("client", alice, "tunnel", "route", "ip", "add", LAB_NET, "lab")
        lab.burrow("client", alice, "tunnel", "route", "ip", "add", PLAIN_NET, "plain")
        lab.run_connector("conn", alice, "office", "{enabled: true}")
        lab.run_connector("conn2", alice, "lab", "{enabled: true}")
        lab.run_connector("conn", alice, "plain", None)  # could reach 198.18.12.10, but has no warp-routing
        lab.alice, lab.bob = alice, bob
        lab.alice_socks = lab.socks(alice)
        yield lab
    finally:
        lab.stop()


def socks_client(lab: Lab, *args: str, port: int = SOCKS_PORT) -> dict:
    result = lab.run("client", sys.executable, "-m", "tests.e2e.socks_client", args[0], f"127.0.0.1:{port}", *args[1:],
                     env={**lab.env, "PYTHONPATH": str(REPO)})  # fmt: skip
    return json.loads(result.stdout)


def curl(lab: Lab, url: str, *extra: str, port: int = SOCKS_PORT) -> subprocess.CompletedProcess:
    return lab.run("client", "curl", "-sS", "--max-time", "60", "--socks5-hostname", f"127.0.0.1:{port}", *extra, url, check=False)


def test_only_the_edge_is_reachable_from_the_client(lab):
    assert lab.run("client", "nc", "-z", "-w", "1", WEB, "80", check=False).returncode != 0
    assert lab.run("client", "ip", "route", "get", WEB, check=False).returncode != 0


def test_curl_through_socks_reaches_nginx_on_the_private_network(lab):
    result = curl(lab, f"http://{WEB}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "office\n"
    assert re.search(rf"{re.escape('198.18.5.1')} .*\"GET / HTTP/1.1\" 200", lab.private_log())  # dialed from the connector


def test_200_mib_arrive_intact(lab):
    out = lab.tmp / "big.received"
    started = time.monotonic()
    result = curl(lab, f"http://{WEB}/big", "-o", str(out))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    digest = hashlib.sha256()
    with open(out, "rb") as received:
        while chunk := received.read(1 << 20):
            digest.update(chunk)
    size = out.stat().st_size
    out.unlink()
    print(f"\nprivate: {BIG_MIB} MiB through access socks in {elapsed:.1f}s ({BIG_MIB / elapsed:.0f} MiB/s)")
    assert size == lab.big_size
    assert digest.hexdigest() == lab.big_sha256


@pytest.mark.skipif(not shutil.which("ssh"), reason="needs ssh")
def test_ssh_through_nc_socks_proxy_command(lab):
    result = lab.run("client", "ssh", "-o", "ProxyCommand=nc -X 5 -x 127.0.0.1:1080 %h %p", "-o", "StrictHostKeyChecking=no",
                     "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                     "-i", str(lab.sshd_key), f"root@{SSH}", "echo hello from $(hostname -I)", check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("hello from") and SSH in result.stdout


def test_dns_through_the_udp_associate(lab):
    answer = socks_client(lab, "dns", DNS, PRINTER)
    assert answer == {"rcode": 0, "a": [WEB]}
    assert f"query[A] {PRINTER} from 198.18.5.1" in lab.private_log()


def test_the_documented_dns_client_works(lab):
    result = lab.run("client", sys.executable, REPO / "docs" / "examples" / "socks-dns.py", DNS, PRINTER)
    assert result.stdout.strip() == f"rcode=0 answers=1 last={WEB}", result.stderr


def test_each_address_goes_to_its_tunnels_connector(lab):
    office, lab2 = curl(lab, f"http://{WEB}/"), curl(lab, f"http://{LAB_WEB}/")
    assert (office.stdout, lab2.stdout) == ("office\n", "lab2\n"), office.stderr + lab2.stderr
    flow_line = r"kind=private .*?address=([\d.]+):80 tunnel=(\S+)"

    def both_flows_logged():  # a flow's access-log line is written when the edge closes it, after curl returns
        tunnels = {m.group(1): m.group(2) for m in re.finditer(flow_line, lab.edge.log())}
        return tunnels if {WEB, LAB_WEB} <= tunnels.keys() else None

    tunnels = wait_until(both_flows_logged, 10, "both flows in the edge's access log")
    assert tunnels[WEB] != tunnels[LAB_WEB]
    shown = json.loads(lab.burrow("client", lab.alice, "tunnel", "route", "ip", "show", "--output", "json").stdout)
    by_network = {route["network"]: route["tunnel_id"] for route in shown}
    assert (by_network[OFFICE_NET], by_network[LAB_NET]) == (tunnels[WEB], tunnels[LAB_WEB])


def _refused(lab: Lab, address: str, code: int, socks_port: int = SOCKS_PORT) -> None:
    """A CONNECT to address:RECORDED_PORT gets reply `code` in time, and no private server saw a thing."""
    before = lab.private_log()
    reply = socks_client(lab, "connect", address, str(RECORDED_PORT), port=socks_port)
    assert reply["reply"] == code, reply
    assert reply["seconds"] < REFUSAL_LIMIT, reply
    time.sleep(0.3)
    assert lab.private_log() == before, "a refused flow reached the private network"


def test_another_accounts_credential_is_refused_and_sees_nothing(lab):
    assert json.loads(lab.burrow("client", lab.bob, "tunnel", "route", "ip", "show", "--output", "json").stdout) == []
    bob_socks = lab.socks(lab.bob, "--token-file", str(lab.bob / "token"), port=1081)
    try:
        _refused(lab, WEB, NETWORK_UNREACHABLE, socks_port=1081)
    finally:
        bob_socks.stop()


def test_an_address_outside_every_route_is_refused(lab):
    _refused(lab, "198.18.11.10", NETWORK_UNREACHABLE)


def test_the_recorders_record(lab):
    before = lab.private_log().count("accepted")
    assert socks_client(lab, "connect", WEB, str(RECORDED_PORT))["reply"] == 0
    assert wait_until(lambda: lab.private_log().count("accepted") == before + 1, 5, "the recorder to log the connection")


def test_a_tunnel_whose_connector_has_no_warp_routing_gets_no_flow(lab):
    assert lab.run("conn", "nc", "-z", "-w", "1", PLAIN_WEB, "80", check=False).returncode == 0  # it could reach it
    _refused(lab, PLAIN_WEB, NETWORK_UNREACHABLE)


def test_service_tokens_follow_the_network_policy_and_revocation(lab):
    tokens = {}
    for name in ("ci", "other"):
        out = lab.burrow("client", lab.alice, "access", "token", "create", name).stdout
        tokens[name] = re.search(r"Client-Id: (\S+)", out).group(1) + ":" + re.search(r"Client-Secret: (\S+)", out).group(1)
    lab.burrow("client", lab.alice, "access", "policy", "set-network", OFFICE_NET, "--allow-token", "ci")
    ci = lab.socks(lab.alice, "--service-token", tokens["ci"], port=1082)
    other = lab.socks(lab.alice, "--service-token", tokens["other"], port=1083)
    try:
        assert curl(lab, f"http://{WEB}/", port=1082).stdout == "office\n"
        _refused(lab, WEB, NOT_ALLOWED, socks_port=1083)  # a valid token the policy does not list
        _refused(lab, LAB_WEB, NOT_ALLOWED, socks_port=1082)  # a network the policy does not cover
        lab.burrow("client", lab.alice, "access", "token", "revoke", "ci")
        _refused(lab, WEB, NOT_ALLOWED, socks_port=1082)
    finally:
        ci.stop()
        other.stop()


def test_metrics_and_access_log_record_private_flows(lab):
    assert curl(lab, f"http://{WEB}/").stdout == "office\n"
    assert socks_client(lab, "dns", DNS, PRINTER)["a"] == [WEB]
    assert socks_client(lab, "connect", "198.18.11.10", "80")["reply"] == NETWORK_UNREACHABLE

    def office_flow_line():  # written when the edge closes the flow, after curl returns
        lines = lab.edge.log().splitlines()
        return next((line for line in lines if "kind=private" in line and f"address={WEB}:80" in line and "reply=succeeded" in line), None)

    line = wait_until(office_flow_line, 10, "the office flow in the edge's access log")
    for field in ("subject=account", f"network={OFFICE_NET}", "protocol=tcp", "bytes_in=", "bytes_out=", "duration_ms=", "client="):
        assert field in line, line
    office = re.search(r"tunnel=(\S+)", line).group(1)

    def value(name: str, **labels: str) -> float:
        wanted = ",".join(f'{key}="{val}"' for key, val in sorted(labels.items()))
        found = re.search(rf"^{name}{{{re.escape(wanted)}}} (\S+)$", lab.edge_metrics(), re.M)
        return float(found.group(1)) if found else -1.0

    assert value("burrow_edge_private_flows_total", protocol="tcp", reply="succeeded", tunnel=office) >= 1
    assert value("burrow_edge_private_flows_total", protocol="udp", reply="succeeded", tunnel=office) >= 1
    assert value("burrow_edge_private_flows_total", protocol="tcp", reply="network_unreachable", tunnel="") >= 1
    assert value("burrow_edge_private_bytes_total", direction="out", tunnel=office) > 0
    assert value("burrow_edge_private_bytes_total", direction="in", tunnel=office) > 0
    wait_until(lambda: value("burrow_edge_private_open_flows", tunnel=office) == 0, 10, "every finished flow to be closed")


# Loopback: the connector's resolver, and the CLI ----------------------------------------------


@pytest.fixture(scope="module")
def loopback(edge):
    """alice routes 127.0.0.0/8 to a warp-routing connector that resolves names; carol's connector does not."""
    origin, port = start_origin(edge.tmp, edge.env)
    edge.procs.append(origin)
    homes = {}
    for account, warp in (("pn-alice", "{enabled: true, resolveNames: true}"), ("pn-carol", "{enabled: true}")):
        env = edge.login(account)
        edge.cli("burrow", "tunnel", "create", "lo", env=env)
        edge.cli("burrow", "tunnel", "route", "ip", "add", "127.0.0.0/8", "lo", env=env)
        config = edge.tmp / f"{account}.yml"
        config.write_text(f"tunnel: lo\nwarp-routing: {warp}\ningress:\n  - service: http_status:404\n")
        edge.start(["burrow", "tunnel", "run", "--config", config, "lo"], f"connector-{account}", env).wait_for_log(
            r"tunnel\.registered index=", count=4
        )
        socks_port = free_port()
        edge.start(["burrow", "access", "socks", "--listen", f"127.0.0.1:{socks_port}"], f"socks-{account}", env).wait_for_log(
            r"socks\.listening"
        )
        homes[account] = (env, socks_port)
    return {"origin_port": port, "homes": homes}


def test_hostnames_are_resolved_by_the_connector_only_with_resolve_names(edge, loopback):
    _, alice_port = loopback["homes"]["pn-alice"]
    url = f"http://localhost:{loopback['origin_port']}/"
    result = subprocess.run(["curl", "-sS", "--max-time", "20", "--socks5-hostname", f"127.0.0.1:{alice_port}", url],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0 and '"method": "GET"' in result.stdout, result.stderr
    _, carol_port = loopback["homes"]["pn-carol"]
    reply = connect(("127.0.0.1", carol_port), "localhost", loopback["origin_port"])
    assert reply["reply"] == ADDRESS_TYPE_NOT_SUPPORTED and reply["seconds"] < REFUSAL_LIMIT


def test_route_ip_cli_refuses_overlaps_and_bad_input_in_one_line(edge, loopback):
    env, _ = loopback["homes"]["pn-alice"]
    overlap = edge.cli("burrow", "tunnel", "route", "ip", "add", "127.0.0.1/32", "lo", env=env, check=False)
    assert overlap.returncode != 0 and "overlaps the route 127.0.0.0/8" in overlap.stderr and "--overwrite" in overlap.stderr
    assert "Traceback" not in overlap.stderr
    bad = edge.cli("burrow", "tunnel", "route", "ip", "add", "300.1.2.0/24", "lo", env=env, check=False)
    assert bad.returncode != 0 and "invalid CIDR '300.1.2.0/24'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    replaced = edge.cli("burrow", "tunnel", "route", "ip", "add", "127.0.0.0/16", "lo", "--overwrite", env=env)
    assert "Replaced the route of 127.0.0.0/8" in replaced.stdout
    shown = edge.cli("burrow", "tunnel", "route", "ip", "show", env=env).stdout
    assert "127.0.0.0/16" in shown and "127.0.0.0/8" not in shown
    edge.cli("burrow", "tunnel", "route", "ip", "add", "127.0.0.0/8", "lo", "--overwrite", env=env)
    missing = edge.cli("burrow", "tunnel", "route", "ip", "delete", "198.18.200.0/24", env=env, check=False)
    assert missing.returncode != 0 and "no route for 198.18.200.0/24" in missing.stderr
    carol_env, _ = loopback["homes"]["pn-carol"]
    assert "127.0.0.0/8" in edge.cli("burrow", "tunnel", "route", "ip", "show", env=carol_env).stdout  # carol's own route


def test_bad_or_vanishing_socks_clients_leave_the_proxy_serving(edge, loopback):
    _, port = loopback["homes"]["pn-alice"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not SOCKS: closed
        assert sock.recv(100) == b""
    for _ in range(5):  # CONNECT, then gone before the answer
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + loopback["origin_port"].to_bytes(2, "big"))
    bind, code, _ = socks_open(("127.0.0.1", port), SOCKS5Command.BIND, "127.0.0.1", 80)
    bind.close()
    assert code == 7  # command not supported
    url = f"http://127.0.0.1:{loopback['origin_port']}/"
    result = subprocess.run(["curl", "-sS", "--max-time", "20", "--socks5", f"127.0.0.1:{port}", url], capture_output=True, text=True)
    assert result.returncode == 0 and '"method": "GET"' in result.stdout, result.stderr


def test_a_socks_clients_half_close_reaches_the_host_whose_reply_still_comes_back(edge, loopback):
    _, port = loopback["homes"]["pn-alice"]
    report = start_server(ReportHandler)  # reads to EOF, then answers with the size and sha256 of what came
    try:
        payload = os.urandom(4 * 1024 * 1024)
        sock, code, _ = socks_open(("127.0.0.1", port), SOCKS5Command.CONNECT, "127.0.0.1", report.server_address[1])
        with sock:
            assert code == 0
            sock.settimeout(60)
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while data := sock.recv(65536):
                reply += data
        assert reply == f"got {len(payload)} bytes {hashlib.sha256(payload).hexdigest()}".encode()
    finally:
        report.shutdown()


def test_access_socks_bad_input_is_one_clear_line(edge, loopback):
    env, busy_port = loopback["homes"]["pn-alice"]  # its proxy listens there already
    for args, message in (
        (["--listen", f"127.0.0.1:{busy_port}"], f"cannot listen on 127.0.0.1:{busy_port} (--listen): Address already in use"),
        (["--service-token", "no-colon"], "--service-token must be CLIENT_ID:CLIENT_SECRET"),
        (["--token-file", str(edge.tmp / "missing")], "--token-file"),
        (["--edge", "127.0.0.1:port"], "the port must be a number"),
    ):
        result = edge.cli("burrow", "access", "socks", *args, env=env, check=False, timeout=20)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
