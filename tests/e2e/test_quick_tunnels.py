"""Quick tunnels (issue 16, acceptance 1): `burrow tunnel --url` with no login against an edge
serving with `--quick-tunnels`; real connector processes, real curl and dig."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from datetime import datetime

import httpx
import pytest

from tests.e2e.conftest import ZONE, free_port, start_edge, start_origin, wait_until

GRACE = 3.0  # `--quick-grace` here, so expiry is seen within seconds (the default, 60 s, is shown below)
QUICK_ARGS = (
    "--quick-tunnels", "--quick-grace", f"{GRACE:g}s", "--quick-tunnels-per-ip", "2/h",
    "--quick-max-streams", "2", "--quick-max-body", "1k",
)
QUICK_NAME = re.compile(rf"https://([a-z]+-[a-z]+-[a-z]+\.quick\.{re.escape(ZONE)})\b")


@pytest.fixture(scope="module")
def quick_edge(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quick")
    metrics_port = free_port()
    edge = start_edge(tmp, serve_args=(*QUICK_ARGS, "--metrics", f"127.0.0.1:{metrics_port}"))
    origin, port = start_origin(tmp, edge.env)
    edge.procs.append(origin)
    edge.origin_port = port
    edge.metrics_port = metrics_port
    yield edge
    for proc in reversed(edge.procs):
        proc.stop()


def quick_args(edge, source: str) -> list:
    return [
        "burrow", "tunnel", "--url", f"http://127.0.0.1:{edge.origin_port}",
        "--edge", edge.url, "--ca-file", edge.ca, "--edge-bind-address", source,
    ]


def start_quick(edge, source: str, name: str):
    """A quick tunnel's connector from `source`; returns (process, hostname) once a session is up."""
    proc = edge.start(quick_args(edge, source), name, edge.connector_env(name))
    log = proc.wait_for_log(r"tunnel\.registered index=")
    box = re.search(r"^\+-+\+\n\|.*\|\n\|\s+(https://\S+)\s+\|\n\+-+\+$", log, re.M)
    assert box, f"no URL box in the connector's output:\n{log}"
    match = QUICK_NAME.fullmatch(box.group(1))
    assert match, f"{box.group(1)} is not https://WORD-WORD-WORD.quick.{ZONE}"
    return proc, match.group(1)


def dig(edge, host: str) -> tuple[str, list[str]]:
    """(status, answer lines) from the edge's DNS server."""
    result = subprocess.run(
        ["dig", "-p", str(edge.dns_port), "@127.0.0.1", host, "A", "+noall", "+comments", "+answer", "+time=2", "+tries=1"],
        capture_output=True, text=True, timeout=10,
    )
    status = re.search(r"status: (\w+)", result.stdout)
    assert status, result.stdout + result.stderr
    answers = [line for line in result.stdout.splitlines() if line and not line.startswith(";")]
    return status.group(1), answers


def session_end_and_expiry(log: str, host: str) -> tuple[float, float]:
    """Edge-log times (seconds) of the quick tunnel's last `session.closed` and of its `quick.expired`."""
    tunnel = re.search(rf"quick\.created tunnel=(\S+) hostname={re.escape(host)}", log).group(1)

    def seconds(line: str) -> float:
        stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        return stamp.timestamp()

    lines = log.splitlines()
    closed = [seconds(line) for line in lines if re.search(rf"session\.(closed|lost) tunnel={tunnel}", line)]
    expired = [seconds(line) for line in lines if f"quick.expired tunnel={tunnel}" in line]
    assert closed and len(expired) == 1, log
    return max(closed), expired[0]


def active_streams(edge, tunnel: str) -> int:
    metrics = httpx.get(f"http://127.0.0.1:{edge.metrics_port}/metrics").text
    found = re.search(rf'^burrow_edge_active_streams\{{tunnel="{tunnel}"\}} (\d+)', metrics, re.M)
    return int(float(found.group(1))) if found else 0


def status_of(edge, host: str, path: str = "/", *extra: str) -> int:
    result = edge.curl(host, path, "-o", "/dev/null", "-w", "%{http_code}", *extra)
    return int(result.stdout)


def create_with_curl(edge, source: str) -> subprocess.CompletedProcess:
    """POST /api/v1/quick-tunnels from `source` with real curl: `-w` adds the status as the last line."""
    return subprocess.run(
        ["curl", "-sS", "--max-time", "30", "--cacert", str(edge.ca), "--interface", source, "-X", "POST",
         "-w", "\n%{http_code}", "-D", "-", f"{edge.url}/api/v1/quick-tunnels"],
        capture_output=True, text=True, timeout=40,
    )


def test_quick_tunnel_serves_resolves_and_expires(quick_edge) -> None:
    env = quick_edge.login("wildcard")  # an account's *.ZONE must not catch quick names, live or expired
    quick_edge.cli("burrow", "tunnel", "create", "catch-all", env=env)
    quick_edge.cli("burrow", "tunnel", "route", "dns", "catch-all", f"*.{ZONE}", env=env)
    assert dig(quick_edge, f"anything.{ZONE}")[0] == "NOERROR"
    assert dig(quick_edge, f"anything.quick.{ZONE}")[0] == "NXDOMAIN"
    connector, host = start_quick(quick_edge, "127.0.0.4", "quick-serve")
    result = quick_edge.curl(host, "/hello?x=1")
    assert result.returncode == 0, result.stderr
    echoed = json.loads(result.stdout)
    assert echoed["target"] == "/hello?x=1"
    assert dict(echoed["headers"])["host"] == f"{host}:{quick_edge.https_port}"
    status, answers = dig(quick_edge, host)
    assert status == "NOERROR"
    assert any("CNAME" in line and f".tunnels.{ZONE}." in line for line in answers), answers
    assert any(line.split()[-2:] == ["A", "127.0.0.1"] for line in answers), answers
    assert all(line.split()[1] == "10" for line in answers), answers  # a short TTL: resolvers forget it soon

    connector.stop()
    assert connector.popen.returncode == 0 and "tunnel.draining" in connector.log()  # SIGTERM: a drain, then exit 0
    wait_until(lambda: dig(quick_edge, host)[0] == "NXDOMAIN", GRACE + 10, "the quick name to stop resolving")
    assert status_of(quick_edge, host) == 404
    closed, expired = session_end_and_expiry(quick_edge.proc.log(), host)
    assert GRACE <= expired - closed <= GRACE + 1.5, f"expired {expired - closed:.2f}s after the last session, grace {GRACE:g}s"


def test_per_ip_limit_answers_429_while_another_address_gets_a_tunnel(quick_edge) -> None:
    for _ in range(2):  # the limit here is 2/h per source address
        assert create_with_curl(quick_edge, "127.0.0.2").stdout.splitlines()[-1] == "201"
    refused = create_with_curl(quick_edge, "127.0.0.2")
    assert refused.stdout.splitlines()[-1] == "429", refused.stdout
    assert re.search(r"^retry-after: \d+", refused.stdout, re.M | re.I), refused.stdout

    result = quick_edge.cli(*quick_args(quick_edge, "127.0.0.2"), env=quick_edge.connector_env("quick-refused"), check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the edge refused a quick tunnel: 127.0.0.2 created 2 quick tunnels"), result.stderr
    assert "Traceback" not in result.stderr

    connector, host = start_quick(quick_edge, "127.0.0.3", "quick-other")
    assert status_of(quick_edge, host) == 200
    connector.stop()


def test_stream_and_body_limits_of_a_quick_tunnel(quick_edge) -> None:
    connector, host = start_quick(quick_edge, "127.0.0.5", "quick-limits")
    tunnel = re.search(r"tunnel\.starting quick=\S+ tunnel=(\S+)", connector.log()).group(1)
    slow: list[int] = []
    threads = [threading.Thread(target=lambda: slow.append(status_of(quick_edge, host, "/?delay=5"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: active_streams(quick_edge, tunnel) == 2, 5, "both slow requests at the origin")  # its 2 streams
    assert status_of(quick_edge, host) == 429
    for thread in threads:
        thread.join()
    assert slow == [200, 200]
    assert status_of(quick_edge, host, "/upload", "--data-binary", "x" * 1024) == 200
    assert status_of(quick_edge, host, "/upload", "--data-binary", "x" * 1025) == 413
    connector.stop()
    metrics = httpx.get(f"http://127.0.0.1:{quick_edge.metrics_port}/metrics").text
    assert re.search(r'burrow_edge_requests_total\{host="quick-tunnels",status_class="4xx"\} [1-9]', metrics), metrics
    assert ".quick." not in metrics  # quick names come and go: one label for all of them
    assert re.search(r"^burrow_edge_quick_tunnels [1-9]", metrics, re.M), metrics  # this one, within its grace


def test_a_connector_whose_quick_tunnel_the_edge_forgot_stops_with_one_line(tmp_path) -> None:
    ports = {"https-listen": free_port(), "tunnel-listen": free_port()}  # fixed, so the restarted edge is where it was

    def fixed_ports(home) -> None:
        config = home / "edge.yml"
        text = config.read_text()
        for key, port in ports.items():
            text = text.replace(f"{key}: 127.0.0.1:0", f"{key}: 127.0.0.1:{port}")
        config.write_text(text)

    edge = start_edge(tmp_path, prepare=fixed_ports, serve_args=("--quick-tunnels",))
    try:
        origin, edge.origin_port = start_origin(tmp_path, edge.env)
        edge.procs.append(origin)
        connector, host = start_quick(edge, "127.0.0.7", "quick-forgotten")
        edge.proc.stop()  # its quick tunnels lived in its memory
        edge.proc = edge.start(["burrow-edge", "serve", "--home", edge.home, "--quick-tunnels"], "edge-again", edge.env)
        edge.proc.wait_for_log(r"edge\.listening")
        wait_until(lambda: not connector.alive(), 60, "the connector to stop")
        assert connector.popen.returncode == 3  # AuthError
        errors = [line for line in connector.log().splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in connector.log(), connector.log()
        assert errors[0].endswith(
            f"refused this connector: credentials rejected; the quick tunnel https://{host} is gone (the edge restarted,"
            " or this connector was away longer than the edge's grace): run `burrow tunnel --url` again for a new one"
        ), errors[0]
    finally:
        for proc in reversed(edge.procs):
            proc.stop()


def test_quick_names_are_never_an_accounts(quick_edge) -> None:
    env = quick_edge.login("squatter")
    quick_edge.cli("burrow", "tunnel", "create", "squat", env=env)
    for name in (f"calm-blue-otter.quick.{ZONE}", f"*.quick.{ZONE}", f"quick.{ZONE}"):
        result = quick_edge.cli("burrow", "tunnel", "route", "dns", "squat", name, env=env, check=False)
        assert result.returncode != 0
        assert f"is under 'quick.{ZONE}', which the edge keeps for quick tunnels" in result.stderr, result.stderr


def test_edge_without_quick_tunnels_refuses_in_one_line(edge) -> None:
    result = subprocess.run(
        ["curl", "-sS", "--cacert", str(edge.ca), "-X", "POST", "-w", "\n%{http_code}", f"{edge.url}/api/v1/quick-tunnels"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.stdout.splitlines()[-1] == "403"
    connector = edge.cli(
        "burrow", "tunnel", "--url", "http://127.0.0.1:9", "--edge", edge.url, "--ca-file", edge.ca,
        env=edge.connector_env("quick-off"), check=False,
    )
    assert connector.returncode != 0
    assert connector.stderr.strip() == (
        "error: the edge refused a quick tunnel: this edge does not offer quick tunnels"
        " (its operator enables them with `burrow-edge serve --quick-tunnels`)"
    ), connector.stderr


def test_default_grace_is_60_seconds(tmp_path) -> None:
    edge = start_edge(tmp_path, serve_args=("--quick-tunnels",))
    try:
        created = create_with_curl(edge, "127.0.0.6")
        *_, body, status = created.stdout.splitlines()
        assert status == "201"
        answer = json.loads(body)
        assert answer["grace"] == 60
        assert QUICK_NAME.fullmatch(answer["url"])
    finally:
        edge.proc.stop()


@pytest.mark.parametrize(("flags", "message"), [
    (("--quick-tunnels-per-ip", "ten/h"), "error: --quick-tunnels-per-ip 'ten/h': use a count per period, e.g. 10/h or 3/30m"),
    (("--quick-max-body", "0"), "error: --quick-max-body: invalid size '0': from 1 byte to 1 TiB"),
    (("--quick-grace", "0s"), "error: --quick-grace must be a positive duration, not '0s'"),
])
def test_bad_quick_flags_are_one_line(edge, flags, message) -> None:
    result = edge.cli("burrow-edge", "serve", "--home", edge.home, "--quick-tunnels", *flags, check=False, timeout=30)
    assert (result.returncode, result.stderr.strip()) == (2, message)


def test_bad_connector_input_is_one_line(edge) -> None:
    env = edge.connector_env("quick-bad")
    for args, message in [
        (("--url", "localhost-8000", "--edge", edge.url), "error: --url: ingress rule 1: service: 'localhost-8000' is an invalid address"),
        (("--url", "http://127.0.0.1:9", "--edge", "http://127.0.0.1:1"), "error: --edge 'http://127.0.0.1:1' must be an https:// URL"),
        (("--url", "http://127.0.0.1:9"), "error: which edge? give --edge https://HOST:PORT (or run `burrow tunnel login` first)"),
        (("--url", "http://127.0.0.1:9", "--edge", f"https://127.0.0.1:{free_port()}"), "error: cannot reach the edge at https://127.0.0.1:"),
    ]:
        result = edge.cli("burrow", "tunnel", *args, env=env, check=False)
        assert result.returncode in (2, 4) and result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
