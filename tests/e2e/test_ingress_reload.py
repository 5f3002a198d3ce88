"""Issue 4 acceptance: SIGHUP (or a changed config.yml) swaps the ingress rules of a running
connector under load: no request fails, new rules apply within a second, tunnel
connections stay up, and an invalid config is rejected while the old rules keep serving."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import ZONE

CLIENTS = 20
BATCH = 20  # requests per curl process (one connection each)
MAX_BATCHES = 40  # per client: the load is bounded even if the test goes wrong


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "6")
        self.end_headers()
        self.wfile.write(b"origin")


def config_text(live: str, extra: str = "") -> str:
    return (
        "tunnel: reload-tunnel\n"
        "ingress:\n"
        f"  - hostname: live.{ZONE}\n    service: {live}\n"
        f"{extra}"
        "  - service: http_status:404\n"
    )


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@pytest.fixture(scope="module")
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def running(edge, origin):
    env = edge.login("reloader")
    edge.cli("burrow", "tunnel", "create", "reload-tunnel", env=env)
    for host in ("live", "new", "poll"):
        edge.cli("burrow", "tunnel", "route", "dns", "reload-tunnel", f"{host}.{ZONE}", env=env)
    config = Path(env["BURROW_HOME"]) / "config.yml"
    write_atomically(config, config_text(origin))
    connector = edge.start(["burrow", "tunnel", "run", "--config", config, "--ha-connections", "2"], "reload-connector", env)
    connector.wait_for_log(r"tunnel\.registered index=", count=2)
    return edge, connector, config, origin


def status(edge, host: str) -> str:
    result = edge.curl(f"{host}.{ZONE}", "/", "-o", "/dev/null", "-w", "%{http_code}")
    return result.stdout.decode()


def load(edge, stop: threading.Event, codes: list) -> None:
    """One client: batches of sequential requests until told to stop."""
    url = f"https://live.{ZONE}:{edge.https_port}/n/[1-{BATCH}]"
    for _ in range(MAX_BATCHES):
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "--cacert", str(edge.ca), "--resolve",
             f"live.{ZONE}:{edge.https_port}:127.0.0.1", "-o", "/dev/null", "-w", "%{http_code}\\n", url],
            capture_output=True, timeout=60,
        )
        codes += result.stdout.decode().split() or [f"curl exit {result.returncode}: {result.stderr!r}"]
        if stop.is_set():
            return


def test_sighup_swaps_rules_under_load_without_failing_a_request(running):
    edge, connector, config, origin = running
    assert status(edge, "new") == "404"
    stop, results = threading.Event(), [[] for _ in range(CLIENTS)]
    clients = [threading.Thread(target=load, args=(edge, stop, codes)) for codes in results]
    for client in clients:
        client.start()
    time.sleep(0.5)
    delays = []
    try:
        for round_ in range(6):
            live = "hello_world" if round_ % 2 == 0 else origin
            new_rule = f"  - hostname: new.{ZONE}\n    service: http_status:20{round_}\n"
            write_atomically(config, config_text(live, new_rule))
            connector.popen.send_signal(signal.SIGHUP)
            sent = time.monotonic()
            while status(edge, "new") != f"20{round_}":
                assert time.monotonic() - sent < 1.0, f"round {round_}: new rule not applied within 1 s"
            delays.append(time.monotonic() - sent)
            time.sleep(0.2)
        assert all(client.is_alive() for client in clients), "the load ended before the reloads did"
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=120)
    codes = [code for client_codes in results for code in client_codes]
    assert len(codes) >= CLIENTS * BATCH
    assert set(codes) == {"200"}, {code: codes.count(code) for code in set(codes)}
    assert max(delays) < 1.0
    log = connector.log()
    assert log.count("config.reloaded why=SIGHUP") >= 6
    assert len(re.findall(r"tunnel\.registered index=", log)) == 2  # connections untouched
    assert connector.alive() and "Traceback" not in log


def test_invalid_config_is_rejected_and_the_old_rules_stay(running):
    edge, connector, config, origin = running
    reloads = connector.log().count("config.reloaded")  # the file watcher may beat the signal to it
    write_atomically(config, config_text(origin, f"  - hostname: new.{ZONE}\n    service: http_status:299\n"))
    connector.popen.send_signal(signal.SIGHUP)
    connector.wait_for_log("config.reloaded", count=reloads + 1, timeout=5)
    assert status(edge, "new") == "299"
    write_atomically(config, config.read_text().replace("http_status:299", "h2c://localhost:1"))
    connector.popen.send_signal(signal.SIGHUP)
    connector.wait_for_log(r"config\.reload_rejected why=SIGHUP keeping=old error=.*unknown scheme 'h2c'", timeout=5)
    assert status(edge, "new") == "299"
    assert status(edge, "live") == "200"
    assert connector.alive()


def test_a_changed_file_is_reloaded_without_a_signal(running):
    edge, connector, config, origin = running
    assert status(edge, "poll") == "404"
    write_atomically(config, config_text(origin, f"  - hostname: poll.{ZONE}\n    service: http_status:202\n"))
    deadline = time.monotonic() + 5
    while status(edge, "poll") != "202":
        assert time.monotonic() < deadline, "file change not picked up"
        time.sleep(0.1)
    assert "config.reloaded why=file changed" in connector.log()
