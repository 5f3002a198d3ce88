"""Issue 4 acceptance: every kind of ingress service and the originRequest keys, through
a real edge, a real connector and real curl, against real origins: plain HTTP, HTTPS
with a certificate for another name, HTTP on a unix socket (plain and TLS), and a
listener whose backlog is full so that connects hang."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn, UnixStreamServer

import pytest
import trustme

from tests.e2e.conftest import ZONE, free_port

ORIGIN_NAME = "origin.internal"  # the HTTPS origins' certificate is for this name, not 127.0.0.1
CONNECT_TIMEOUT = 1.0
KEEP_ALIVE_CONNECTIONS = 2


class Echo(BaseHTTPRequestHandler):
    """Answers every request with JSON: what the origin received."""

    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024  # one write per response (flushed after each), so Nagle never waits

    def log_message(self, *args) -> None:
        pass

    def _answer(self) -> None:
        chunked = "chunked" in self.headers.get("transfer-encoding", "")
        body = _read_chunked(self.rfile) if chunked else self.rfile.read(int(self.headers.get("content-length", 0)))
        payload = json.dumps(
            {
                "origin": self.server.label,
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body_length": len(body),
                "chunked": chunked,
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = _answer


def _read_chunked(rfile) -> bytes:
    body = b""
    while size := int(rfile.readline().split(b";")[0], 16):
        body += rfile.read(size)
        rfile.readline()
    while rfile.readline() not in (b"\r\n", b""):
        pass
    return body


class Counting:
    """Counts the connections a server accepted."""

    accepted = 0
    label = ""

    def process_request(self, request, client_address) -> None:
        self.accepted += 1
        super().process_request(request, client_address)


class TcpOrigin(Counting, ThreadingHTTPServer):
    daemon_threads = True


class UnixOrigin(Counting, ThreadingMixIn, UnixStreamServer):
    daemon_threads = True


def serve(server, label: str, tls: ssl.SSLContext | None = None):
    server.label = label
    if tls is not None:  # the handshake happens in accept(); a failed one is dropped by socketserver
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@dataclass
class Origins:
    http: TcpOrigin
    https: TcpOrigin
    counted: TcpOrigin
    unix: Path
    unix_tls: Path
    blackhole: int
    ca_file: Path


@pytest.fixture(scope="module")
def origins(tmp_path_factory) -> Iterator[Origins]:
    tmp = tmp_path_factory.mktemp("origins")
    ca = trustme.CA()
    ca_file = tmp / "origin-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(ORIGIN_NAME).configure_cert(tls)
    servers = [
        serve(TcpOrigin(("127.0.0.1", 0), Echo), "http"),
        serve(TcpOrigin(("127.0.0.1", 0), Echo), "https", tls),
        serve(TcpOrigin(("127.0.0.1", 0), Echo), "counted"),
        serve(UnixOrigin(str(tmp / "plain.sock"), Echo), "unix"),
        serve(UnixOrigin(str(tmp / "tls.sock"), Echo), "unix-tls", tls),
    ]
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    fillers = []  # fill the accept queue, so that further SYNs are dropped and connects hang
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(blackhole.getsockname())
        fillers.append(filler)
    yield Origins(*servers[:3], tmp / "plain.sock", tmp / "tls.sock", blackhole.getsockname()[1], ca_file)
    for server in servers:
        server.shutdown()
        server.server_close()
    for sock in [blackhole, *fillers]:
        sock.close()


HOSTS = [
    "http", "bad-tls", "no-verify", "ca-pool", "sni", "host-header", "unix", "unix-tls", "hello",
    "teapot", "ssh", "slow", "pool", "chunked", "wild", "bücher", "down",
]


@dataclass
class Tunnel:
    edge: object
    connector: object
    config: Path
    env: dict


@pytest.fixture(scope="module")
def tunnel(edge, origins) -> Tunnel:
    env = edge.login("ingress")
    edge.cli("burrow", "tunnel", "create", "ingress-tunnel", env=env)
    for host in HOSTS:
        edge.cli("burrow", "tunnel", "route", "dns", "ingress-tunnel", f"{host}.{ZONE}".encode("idna").decode(), env=env)
    config = Path(env["BURROW_HOME"]) / "config.yml"
    https = f"https://127.0.0.1:{origins.https.server_address[1]}"
    http = f"http://127.0.0.1:{origins.http.server_address[1]}"
    config.write_text(
        f"""# every kind of service, and the originRequest keys that change what the origin sees
tunnel: ingress-tunnel
originRequest:
  connectTimeout: 10s
  caPool: {origins.ca_file}
ingress:
  - hostname: http.{ZONE}
    service: {http}
  - hostname: bad-tls.{ZONE}
    service: {https}
  - hostname: no-verify.{ZONE}
    service: {https}
    originRequest: {{noTLSVerify: true}}
  - hostname: ca-pool.{ZONE}
    service: {https}
    originRequest: {{originServerName: {ORIGIN_NAME}}}
  - hostname: sni.{ZONE}
    service: {https}
    originRequest: {{matchSNItoHost: true, httpHostHeader: {ORIGIN_NAME}}}
  - hostname: host-header.{ZONE}
    service: {http}
    originRequest: {{httpHostHeader: internal.example}}
  - hostname: unix.{ZONE}
    service: unix:{origins.unix}
  - hostname: unix-tls.{ZONE}
    service: unix+tls:{origins.unix_tls}
    originRequest: {{originServerName: {ORIGIN_NAME}}}
  - hostname: hello.{ZONE}
    service: hello_world
  - hostname: teapot.{ZONE}
    service: http_status:418
  - hostname: ssh.{ZONE}
    service: ssh://127.0.0.1:22
  - hostname: slow.{ZONE}
    service: http://127.0.0.1:{origins.blackhole}
    originRequest: {{connectTimeout: {CONNECT_TIMEOUT:g}s}}
  - hostname: pool.{ZONE}
    service: http://127.0.0.1:{origins.counted.server_address[1]}
    originRequest: {{keepAliveConnections: {KEEP_ALIVE_CONNECTIONS}}}
  - hostname: chunked.{ZONE}
    service: {http}
    originRequest: {{disableChunkedEncoding: true}}
  - hostname: bücher.{ZONE}
    service: hello_world
  - hostname: down.{ZONE}
    service: http://127.0.0.1:{free_port()}
  - hostname: "*.{ZONE}"
    path: ^/api(/|$)
    service: {http}
  - service: http_status:404
""",
        encoding="utf-8",
    )
    connector = edge.start(
        ["burrow", "tunnel", "run", "--config", config, "--ha-connections", "2"], "ingress-connector", env
    )
    connector.wait_for_log(r"tunnel\.registered index=", count=2)
    return Tunnel(edge, connector, config, env)


def get(tunnel: Tunnel, host: str, path: str = "/", *extra: str) -> tuple[int, dict, bytes]:
    """curl through the edge: status, headers (lower-case names), body."""
    result = tunnel.edge.curl(f"{host}.{ZONE}".encode("idna").decode(), path, "-i", *extra)
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def echoed(body: bytes) -> dict:
    data = json.loads(body)
    data["header"] = dict(data["headers"])
    return data


def test_http_origin(tunnel):
    status, _, body = get(tunnel, "http", "/v1/x?y=1")
    assert status == 200
    assert echoed(body)["origin"] == "http" and echoed(body)["path"] == "/v1/x?y=1"


def test_https_origin_with_a_certificate_for_another_name_is_a_502(tunnel):
    status, headers, body = get(tunnel, "bad-tls")
    assert status == 502
    assert headers["burrow-error"] == "connector"
    assert b"failed TLS verification for '127.0.0.1'" in body
    assert b"originServerName and caPool, or noTLSVerify" in body


def test_https_origin_with_no_tls_verify(tunnel):
    status, _, body = get(tunnel, "no-verify")
    assert status == 200 and echoed(body)["origin"] == "https"


def test_https_origin_with_origin_server_name_and_ca_pool(tunnel):
    status, _, body = get(tunnel, "ca-pool")
    assert status == 200 and echoed(body)["origin"] == "https"


def test_match_sni_to_host_uses_the_http_host_header(tunnel):
    status, _, body = get(tunnel, "sni")
    assert status == 200
    assert echoed(body)["header"]["host"] == ORIGIN_NAME


def test_http_host_header_rewrites_host_and_keeps_the_original(tunnel):
    status, _, body = get(tunnel, "host-header")
    assert status == 200
    header = echoed(body)["header"]
    assert header["host"] == "internal.example"
    assert header["x-forwarded-host"] == f"host-header.{ZONE}:{tunnel.edge.https_port}"


def test_unix_socket_origin(tunnel):
    status, _, body = get(tunnel, "unix", "/sock")
    assert status == 200 and echoed(body)["origin"] == "unix" and echoed(body)["path"] == "/sock"


def test_unix_tls_socket_origin(tunnel):
    status, _, body = get(tunnel, "unix-tls")
    assert status == 200 and echoed(body)["origin"] == "unix-tls"


def test_hello_world_shows_the_request_as_text_and_html(tunnel):
    status, headers, body = get(tunnel, "hello", "/some/path?q=1", "-H", "X-Probe: yes")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert "method: GET" in text and "path: /some/path?q=1" in text and "x-probe: yes" in text
    status, headers, body = get(tunnel, "hello", "/", "-H", "Accept: text/html", "-H", "X-Probe: <b>")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<td>&lt;b&gt;</td>" in body


def test_http_status_service(tunnel):
    status, _, body = get(tunnel, "teapot")
    assert (status, body) == (418, b"")


def test_raw_tcp_service_answers_http_with_a_page_naming_burrow_access(tunnel):
    status, headers, body = get(tunnel, "ssh")
    assert status == 400 and headers["burrow-error"] == "connector"
    assert f"`burrow access ssh --hostname ssh.{ZONE}`".encode() in body
    assert b"ssh://127.0.0.1:22" in body


def test_wildcard_with_anchored_path(tunnel):
    """(The dev certificate covers one label below the zone: depth is tested in test_ingress.py.)"""
    assert get(tunnel, "wild", "/api/users")[0] == 200
    assert get(tunnel, "wild", "/api")[0] == 200
    assert get(tunnel, "wild", "/v1/api")[0] == 404
    assert get(tunnel, "wild", "/apiary")[0] == 404


def test_unicode_rule_hostname_matches_the_punycode_host(tunnel):
    status, _, body = get(tunnel, "bücher")
    assert status == 200 and b"host: xn--bcher-kva" in body


def test_disable_chunked_encoding_sends_a_content_length(tunnel, tmp_path):
    data = tmp_path / "body"
    data.write_bytes(b"x" * 100_000)
    chunked = ("-H", "Transfer-Encoding: chunked", "--data-binary", f"@{data}")
    status, _, body = get(tunnel, "chunked", "/", *chunked)
    assert status == 200
    assert echoed(body)["chunked"] is False
    assert echoed(body)["header"]["content-length"] == "100000" and echoed(body)["body_length"] == 100_000
    status, _, body = get(tunnel, "http", "/", *chunked)
    assert echoed(body)["chunked"] is True and echoed(body)["body_length"] == 100_000


def test_refusing_origin_is_a_502_saying_why(tunnel):
    status, headers, body = get(tunnel, "down")
    assert status == 502 and headers["burrow-error"] == "connector"
    assert b"is unreachable: Connection refused" in body


def test_connect_timeout_is_a_504_after_the_configured_time(tunnel):
    started = time.monotonic()
    status, headers, body = get(tunnel, "slow")
    elapsed = time.monotonic() - started
    assert status == 504 and headers["burrow-error"] == "connector"
    assert b"did not accept a connection within 1s (connectTimeout)" in body
    assert CONNECT_TIMEOUT * 0.9 <= elapsed < CONNECT_TIMEOUT + 4


def test_keep_alive_connections_bound_a_thousand_sequential_requests(tunnel, origins):
    before = origins.counted.accepted
    result = tunnel.edge.curl(
        f"pool.{ZONE}", "/n/[1-1000]", "-o", "/dev/null", "-w", "%{http_code}\\n", timeout=120
    )
    assert result.returncode == 0, result.stderr
    codes = result.stdout.decode().split()
    assert codes == ["200"] * 1000
    assert 1 <= origins.counted.accepted - before <= KEEP_ALIVE_CONNECTIONS


def test_connector_survived_everything(tunnel):
    assert tunnel.connector.alive()
    assert "Traceback" not in tunnel.connector.log()
