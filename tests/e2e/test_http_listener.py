"""The plain-HTTP listener with real curl: a 308 to HTTPS for routed hostnames (404 for
others), the
origin's answer through a real tunnel for one in `http-redirect-exempt`, and the ACME
HTTP-01 path answered by the edge for both."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import ZONE, free_port, start_edge, start_origin
from tests.e2e.test_websocket import EchoOrigin
from tests.e2e.tunnels import run_tunnel

PLAIN = f"plain.{ZONE}"  # listed in http-redirect-exempt
SECURE = f"secure.{ZONE}"  # not listed: redirected
WS = f"ws.{ZONE}"  # listed, a WebSocket echo origin


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    http_port = free_port()

    def prepare(home):
        with open(home / "edge.yml", "a") as config:
            config.write(f"http-listen: 127.0.0.1:{http_port}\nhttp-redirect-exempt: [{PLAIN}, {WS}]\n")

    edge = start_edge(tmp_path_factory.mktemp("http-listener"), prepare)
    edge.http_port = http_port
    origin, origin_port = start_origin(edge.tmp, edge.env)
    edge.procs.append(origin)
    echo = EchoOrigin()
    rules = [(label, f"http://127.0.0.1:{origin_port}") for label in ("plain", "secure")]
    run_tunnel(edge, "plain", [*rules, ("ws", f"ws://127.0.0.1:{echo.port}")])
    yield edge
    echo.server.shutdown()
    for proc in reversed(edge.procs):
        proc.stop()


def curl_http(edge, host: str, path: str) -> tuple[int, dict, bytes]:
    """Real curl over plain HTTP: status, headers (lower-case names) and body."""
    result = subprocess.run(
        [
            "curl", "-sS", "--max-time", "30", "-D", "-", "--resolve", f"{host}:{edge.http_port}:127.0.0.1",
            f"http://{host}:{edge.http_port}{path}",
        ],
        capture_output=True, timeout=40, check=True,
    )
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_a_listed_host_gets_the_origin_over_plain_http(edge):
    status, _headers, body = curl_http(edge, PLAIN, "/hello?x=1")
    assert status == 200
    echo = json.loads(body)
    assert echo["target"] == "/hello?x=1"
    seen = {name.lower(): value for name, value in echo["headers"]}
    assert seen["x-forwarded-proto"] == "http" and seen["host"] == f"{PLAIN}:{edge.http_port}"


def test_other_hosts_are_redirected_to_https(edge):
    status, headers, _body = curl_http(edge, SECURE, "/hello?x=1")
    assert status == 308
    assert headers["location"] == f"https://{SECURE}:{edge.https_port}/hello?x=1"
    # and the redirect leads to the same origin over HTTPS
    result = edge.curl(SECURE, "/hello?x=1")
    assert result.returncode == 0
    seen = {name.lower(): value for name, value in json.loads(result.stdout)["headers"]}
    assert seen["x-forwarded-proto"] == "https"


@pytest.mark.parametrize("host", ["elsewhere.example.org", f"unrouted.{ZONE}"])
def test_hostnames_the_edge_does_not_route_get_404_not_a_redirect(edge, host):
    status, headers, body = curl_http(edge, host, "/hello")
    assert (status, body) == (404, b"no such hostname here\n") and "location" not in headers


def test_the_edge_own_name_is_redirected(edge):
    status, headers, _body = curl_http(edge, ZONE, "/api/v1/edge")
    assert status == 308 and headers["location"] == f"https://{ZONE}:{edge.https_port}/api/v1/edge"


@pytest.mark.parametrize("host", [PLAIN, SECURE])
def test_the_acme_path_is_answered_by_the_edge_for_both(edge, host):
    status, _headers, body = curl_http(edge, host, "/.well-known/acme-challenge/no-such-token")
    assert (status, body) == (404, b"no such ACME challenge\n")


def test_a_listed_host_takes_websockets_over_plain_http(edge):
    sock = socket.create_connection(("127.0.0.1", edge.http_port), timeout=20)
    with connect(f"ws://{WS}:{edge.http_port}/", sock=sock, open_timeout=20) as ws:
        ws.send("over plain http")
        assert ws.recv(timeout=20) == "over plain http"
