"""EdgeAPI against a tiny real HTTPS server (canned answers) made with trustme."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from connector.management.edge_api import EdgeAPI
from shared.errors import (
    AuthError,
    BurrowError,
    ConfigError,
    ConflictError,
    NotFoundError,
    Unreachable,
)

TOKEN = "brw_test-token"
# path → (status, body)
ANSWERS: dict[str, tuple[int, bytes]] = {
    "/api/v1/account": (200, b'{"id": "a1", "name": "alice"}'),
    "/api/v1/tunnels": (200, b'{"tunnels": [{"id": "t1", "name": "web"}]}'),
    "/api/v1/tunnels/nope": (404, b'{"error": "tunnel \'nope\' not found"}'),
    "/api/v1/tunnels/a%2Fb": (200, b'{"id": "t2", "name": "a/b"}'),
    "/api/v1/routes/dns": (409, b'{"error": "hostname \'x\' belongs to another account"}'),
    "/api/v1/edge": (400, b'{"error": "bad thing"}'),
}


class Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.server.bodies.append(json.loads(self.rfile.read(length)) if length else None)  # type: ignore[attr-defined]
        if self.headers.get("authorization") != f"Bearer {TOKEN}":
            status, body = 401, b'{"error": "login token rejected"}'
        else:
            status, body = ANSWERS.get(self.path, (500, b"<html>oops</html>"))
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(ca: trustme.CA):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.bodies = []  # type: ignore[attr-defined]
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def url(httpd: ThreadingHTTPServer) -> str:
    return f"https://127.0.0.1:{httpd.server_address[1]}"


def test_calls_and_error_mapping(server: ThreadingHTTPServer, ca: trustme.CA) -> None:
    ca_pem = ca.cert_pem.bytes().decode()
    with EdgeAPI(url(server) + "/", TOKEN, ca_pem) as api:
        assert api.account() == {"id": "a1", "name": "alice"}
        assert api.list_tunnels() == [{"id": "t1", "name": "web"}]
        assert api.get_tunnel("a/b")["id"] == "t2"
        with pytest.raises(NotFoundError, match="tunnel 'nope' not found"):
            api.get_tunnel("nope")
        with pytest.raises(ConflictError, match="belongs to another account"):
            api.route_dns("web", "x", overwrite=True)
        assert server.bodies[-1] == {"tunnel": "web", "hostname": "x", "overwrite": True}
        with pytest.raises(ConfigError, match="bad thing"):
            api.edge()
        api.create_tunnel("web", b"\0" * 32)
        assert server.bodies[-1] == {"name": "web", "secret": "A" * 43 + "="}
        with pytest.raises(BurrowError, match="500") as info:
            api.get_tunnel("boom")
        assert type(info.value) is BurrowError
    with EdgeAPI(url(server), "wrong", ca_pem) as api:
        with pytest.raises(AuthError, match="login token rejected"):
            api.account()


def test_unreachable(server: ThreadingHTTPServer) -> None:
    # Untrusted certificate (system CAs only).
    with EdgeAPI(url(server), TOKEN, None) as api:
        with pytest.raises(Unreachable, match="cannot reach the edge at https://127.0.0.1"):
            api.account()
    # Nothing listening.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with EdgeAPI(f"https://127.0.0.1:{port}", TOKEN, None) as api:
        with pytest.raises(Unreachable):
            api.account()
