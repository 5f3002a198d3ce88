"""Helpers for e2e modules that run their own tunnel (own account, config.yml, connector)
against the module's `edge` fixture, and their own in-process origins."""

from __future__ import annotations

import hashlib
import json
import socket
import socketserver
import ssl
import threading
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.conftest import ZONE, start_edge, start_origin


def run_tunnel(edge, name: str, rules: list[tuple], connections: int = 2, top: str = "", args: tuple = ()):
    """Log in as a new account, create tunnel `name`, route `rules` (host label, service[,
    originRequest dict]) and run it (with `args`); `top`: more top-level YAML for config.yml."""
    env = edge.login(name)
    edge.cli("burrow", "tunnel", "create", name, env=env)
    lines = [f"tunnel: {name}", top, "ingress:"]
    for label, service, *options in rules:
        edge.cli("burrow", "tunnel", "route", "dns", name, f"{label}.{ZONE}", env=env)
        lines += [f"  - hostname: {label}.{ZONE}", f"    service: {service}"]
        lines += [f"    originRequest: {json.dumps(option)}" for option in options]  # JSON is YAML
    lines += ["  - service: http_status:404"]
    config = Path(env["BURROW_HOME"]) / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    proc = edge.start(
        ["burrow", "tunnel", "run", "--config", config, "--ha-connections", connections, *args, name], name, env
    )
    proc.wait_for_log(r"tunnel\.registered index=", count=connections)
    return proc


@contextmanager
def edge_with_origin_tunnel(tmp: Path, host: str, serve_args: tuple = ()):
    """A fresh edge (for tests that stop it) with one tunnel routing `host` to the test origin
    through `tunnel run --url`, 4 sessions registered; yields (edge, connector), stops all after."""
    edge = start_edge(tmp, serve_args=serve_args)
    try:
        env = edge.login("drainer")
        edge.cli("burrow", "tunnel", "create", "drain-tunnel", env=env)
        edge.cli("burrow", "tunnel", "route", "dns", "drain-tunnel", host, env=env)
        origin, port = start_origin(tmp, env)
        edge.procs.append(origin)
        connector = edge.start(["burrow", "tunnel", "run", "--url", f"http://127.0.0.1:{port}", "drain-tunnel"], "connector", env)
        connector.wait_for_log(r"tunnel\.registered index=", count=4)
        yield edge, connector
    finally:
        for proc in reversed(edge.procs):
            proc.stop()


def edge_context(edge) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(edge.ca))
    context.set_alpn_protocols(["http/1.1"])
    return context


def tcp_socket(edge) -> socket.socket:
    return socket.create_connection(("127.0.0.1", edge.https_port), timeout=30)


def tls_socket(edge, host: str) -> ssl.SSLSocket:
    """A TLS connection to the edge's HTTPS port with SNI `host`, trusting the dev CA."""
    return edge_context(edge).wrap_socket(tcp_socket(edge), server_hostname=host)


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class ThreadingTcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def start_tcp_echo() -> ThreadingTcpServer:
    server = ThreadingTcpServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class ReportHandler(socketserver.BaseRequestHandler):
    """Reads to the client's half-close, then answers how much came and its sha256, and closes."""

    def handle(self) -> None:
        digest, size = hashlib.sha256(), 0
        while data := self.request.recv(65536):
            digest.update(data)
            size += len(data)
        self.request.sendall(f"got {size} bytes {digest.hexdigest()}".encode())


def start_server(handler) -> ThreadingTcpServer:
    """A threaded TCP server on a loopback ephemeral port running `handler` per connection."""
    server = ThreadingTcpServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
