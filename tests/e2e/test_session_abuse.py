"""Bad input on the tunnel port: a registration flood is rate limited per source address
without touching other sources; garbage after registration and a silent (half-open)
session are closed with a logged reason. Raw TLS clients, a real edge and connector."""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from pathlib import Path

import pytest

from shared import registration
from shared.credentials import load_credentials
from shared.crypto import tunnel_client_context
from tests.e2e.conftest import ZONE, start_edge, start_origin

BURST, RATE = 10, 1.0
FLOOD = 200


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("abuse")
    edge = start_edge(tmp, serve_args=(
        "--registration-burst", str(BURST), "--registration-rate", str(RATE),
        "--heartbeat-interval", "1s", "--heartbeat-timeout", "2s",
    ))
    env = edge.login("abuser")
    edge.cli("burrow", "tunnel", "create", "abuse-tunnel", env=env)
    edge.cli("burrow", "tunnel", "route", "dns", "abuse-tunnel", f"app.{ZONE}", env=env)
    origin, port = start_origin(tmp, env)
    edge.procs.append(origin)
    creds = load_credentials(Path(env["BURROW_HOME"]) / "abuse-tunnel" / "credentials.json")
    yield edge, env, creds, port
    for proc in reversed(edge.procs):
        proc.stop()


def tls_to_tunnel_port(edge, creds, source: str) -> ssl.SSLSocket:
    """A TLS connection to the tunnel port from loopback address `source` (raises if refused)."""
    sock = socket.create_connection(("127.0.0.1", edge.tunnel_port), timeout=10, source_address=(source, 0))
    try:
        return tunnel_client_context(creds.edge_ca).wrap_socket(sock, server_hostname=creds.edge_server_name)
    except BaseException:
        sock.close()
        raise


def register(edge, creds, source: str) -> ssl.SSLSocket:
    """Register as connection 0 of a made-up connector and read the edge's answer."""
    tls = tls_to_tunnel_port(edge, creds, source)
    tls.sendall(registration.Register(creds.tunnel_id, creds.tunnel_secret.value, "raw-client", 0, "raw/1").to_wire())
    reader = registration.RegistrationReader(expect_magic=False)
    while True:
        message, _ = reader.feed(tls.recv(16384))
        if message is not None:
            assert isinstance(message, registration.Registered), message
            return tls


def closed_by_edge(tls: ssl.SSLSocket, timeout: float) -> bool:
    """True once the edge closed the connection (reads until EOF or a reset)."""
    tls.settimeout(timeout)
    try:
        while tls.recv(65536):
            pass
    except (ConnectionError, ssl.SSLError):
        pass
    except TimeoutError:
        return False
    return True


def test_a_registration_flood_from_one_source_is_limited_and_others_are_not(setup):
    edge, env, creds, port = setup
    started = time.monotonic()
    admitted = refused = 0
    for _ in range(FLOOD):
        try:
            tls_to_tunnel_port(edge, creds, "127.0.0.2").close()
            admitted += 1
        except (ConnectionError, ssl.SSLError, OSError):
            refused += 1
    elapsed = time.monotonic() - started
    assert BURST <= admitted <= BURST + RATE * elapsed + 1, (admitted, elapsed)
    assert refused == FLOOD - admitted

    # another source is untouched, and so is a real connector (from 127.0.0.1) meanwhile
    tls_to_tunnel_port(edge, creds, "127.0.0.3").close()
    connector = edge.start(["burrow", "tunnel", "run", "--url", f"http://127.0.0.1:{port}", "abuse-tunnel"], "connector", env)
    connector.wait_for_log(r"tunnel\.registered index=", count=4)
    assert edge.curl(f"app.{ZONE}", "/", "-w", "%{http_code}", "-o", "/dev/null").stdout == b"200"

    # one log line for the whole flood (it took less than the report interval), with the count
    lines = re.findall(r"session\.rate_limited source=127\.0\.0\.2 refused=(\d+)", edge.proc.log())
    assert lines == ["1"], lines  # the first refusal is reported at once, the rest in the next interval
    assert "source=127.0.0.3" not in edge.proc.log() and "source=127.0.0.1 " not in edge.proc.log()


def test_garbage_after_registration_closes_the_session_with_a_reason(setup):
    edge, _, creds, _ = setup
    tls = register(edge, creds, "127.0.0.4")
    tls.sendall(b"GET / HTTP/1.1\r\nHost: not-a-tunnel-frame\r\n\r\n" * 4)
    assert closed_by_edge(tls, 10)
    log = edge.proc.wait_for_log(r"session\.lost .* error=tunnel peer broke the protocol", timeout=5)
    assert "connector=raw-client" in log


def test_a_silent_half_open_session_times_out(setup):
    edge, env, creds, _ = setup
    lost_before = len(re.findall(r"did not answer PING", edge.proc.log()))
    tls = register(edge, creds, "127.0.0.5")  # then never answers anything, like a peer that vanished
    registered_at = time.monotonic()
    edge.proc.wait_for_log(r"did not answer PING within 2s", count=lost_before + 1, timeout=10)
    assert time.monotonic() - registered_at < 1 + 2 + 2  # interval + timeout + slack
    assert closed_by_edge(tls, 5)
    info = json.loads(edge.cli("burrow", "tunnel", "info", "abuse-tunnel", "-o", "json", env=env).stdout)
    assert "raw-client" not in {group["connector_id"] for group in info["connectors"]}  # its row is gone
