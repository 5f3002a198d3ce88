"""Issue 16 acceptance 4 and 5, with real nginx origins behind a real edge and connector:
the PROXY protocol (v1 and v2, on HTTP, HTTPS and TCP services) gives nginx the visitor's
address and port, and client certificates (mTLS) open an origin that requires them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import trustme

from tests.e2e.conftest import ZONE, free_port, wait_until
from tests.e2e.nginx import needs_nginx, start_nginx
from tests.e2e.test_tcp_access import start_access
from tests.e2e.tunnels import run_tunnel

pytestmark = needs_nginx
VISITOR_IP = "127.0.0.2"
ORIGIN_NAME = "origin.internal"
LOG = "log_format visitors '$proxy_protocol_addr $proxy_protocol_port $remote_addr \"$request\"';"
ANSWER = 'return 200 "$proxy_protocol_addr $proxy_protocol_port\\n";'


@pytest.fixture(scope="module")
def origins(edge, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("nginx")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    ca.issue_cert(ORIGIN_NAME).private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    client = ca.issue_cert("burrow-connector")
    client.cert_chain_pems[0].write_to_path(str(tmp / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp / "client.key"))
    ports = {name: free_port() for name in ("proxy", "proxy_tls", "mtls", "mtls_http")}
    tls = f"ssl_certificate {tmp}/server.pem; ssl_certificate_key {tmp}/server.pem;"
    client_auth = f"{tls} ssl_client_certificate {tmp}/ca.pem; ssl_verify_client on;"
    servers = f"""
  {LOG}
  server {{ listen 127.0.0.1:{ports['proxy']} proxy_protocol; access_log {tmp}/proxy.log visitors; {ANSWER} }}
  server {{ listen 127.0.0.1:{ports['proxy_tls']} ssl proxy_protocol; {tls} access_log {tmp}/proxy.log visitors; {ANSWER} }}
  server {{ listen 127.0.0.1:{ports['mtls']} ssl; {client_auth} ssl_conf_command VerifyMode Require;
           return 200 "client $ssl_client_verify\\n"; }}
  server {{ listen 127.0.0.1:{ports['mtls_http']} ssl; {client_auth} return 200 "client $ssl_client_verify\\n"; }}
"""
    start_nginx(edge, tmp, servers, list(ports.values()))
    verify = {"caPool": str(tmp / "ca.pem"), "originServerName": ORIGIN_NAME}
    identity = {"clientCertificate": str(tmp / "client.pem"), "clientKey": str(tmp / "client.key")}
    proxy, proxy_tls, mtls = (f"127.0.0.1:{ports[name]}" for name in ("proxy", "proxy_tls", "mtls"))
    run_tunnel(edge, "origin-options", [
        ("pp1", f"http://{proxy}", {"proxyProtocol": "v1"}),
        ("pp2", f"http://{proxy}", {"proxyProtocol": "v2"}),
        ("pp2-tls", f"https://{proxy_tls}", {"proxyProtocol": "v2", **verify}),
        ("pp-tcp", f"tcp://{proxy}", {"proxyProtocol": "v1"}),
        ("mtls", f"https://{mtls}", {**verify, **identity}),
        ("mtls-none", f"https://{mtls}", verify),
        ("mtls-plain-nginx", f"https://127.0.0.1:{ports['mtls_http']}", verify),
    ])
    return {"log": tmp / "proxy.log"}


def visit(edge, label: str) -> tuple[int, str, int]:
    """curl from 127.0.0.2: status, body, and curl's own source port."""
    result = edge.curl(f"{label}.{ZONE}", "/visit", "--interface", VISITOR_IP, "-w", "\n%{http_code} %{local_port}")
    assert result.returncode == 0, result.stderr
    body, _, tail = result.stdout.decode().rpartition("\n")
    status, port = tail.split()
    return int(status), body, int(port)


def logged(log: Path, port: int) -> list[str]:
    """nginx's access-log lines of the visitor with source `port`."""
    return [line for line in log.read_text().splitlines() if line.startswith(f"{VISITOR_IP} {port} ")]


@pytest.mark.parametrize("label", ["pp1", "pp2", "pp2-tls"])
def test_proxy_protocol_gives_nginx_the_visitors_address_and_port(edge, origins, label):
    status, body, port = visit(edge, label)
    assert (status, body) == (200, f"{VISITOR_IP} {port}\n")
    lines = wait_until(lambda: logged(origins["log"], port), 5, "nginx's access log line")
    assert lines == [f'{VISITOR_IP} {port} 127.0.0.1 "GET /visit HTTP/1.1"']  # $remote_addr: the connector


def test_proxy_protocol_on_a_tcp_service(edge, origins):
    """`burrow access tcp` is the visitor: nginx sees its address at the edge, not the connector's socket."""
    proc, local = start_access(edge, "pp-tcp")
    result = subprocess.run(["curl", "-sS", "--max-time", "30", f"http://127.0.0.1:{local}/raw"], capture_output=True, text=True)
    proc.stop()
    address, port = result.stdout.split()
    assert address == "127.0.0.1" and 0 < int(port) < 65536, result
    assert re.search(rf'^127\.0\.0\.1 {port} 127\.0\.0\.1 "GET /raw HTTP/1\.1"$', origins["log"].read_text(), re.MULTILINE)


def test_client_certificate_opens_an_origin_that_requires_one(edge, origins):
    status, body, _ = visit(edge, "mtls")
    assert (status, body) == (200, "client SUCCESS\n")


def test_without_a_client_certificate_the_visitor_gets_a_502_saying_why(edge, origins):
    status, body, _ = visit(edge, "mtls-none")
    assert status == 502
    assert "may require a client certificate (TLS alert: handshake failure)" in body
    assert "set originRequest clientCertificate and clientKey" in body


def test_plain_ssl_verify_client_answers_its_own_400(edge, origins):
    """nginx without `VerifyMode Require` finishes the handshake and refuses in HTTP, itself."""
    status, body, _ = visit(edge, "mtls-plain-nginx")
    assert status == 400 and "No required SSL certificate was sent" in body
