"""Three real edges (127.0.0.11-13) sharing one real PostgreSQL registry (issue 18).

A connector spreads its sessions over them; curl reaches the origin through every edge; `dig`
against each answers the same records (every live edge's address); a route added through edge A's
admin API answers in DNS and routes on edge C within a second (figures printed); `kill -9` of the
edge holding most sessions: GETs through the survivors keep succeeding, the sessions come back on
them, and the dead edge leaves DNS; an edge that joins later gets sessions with no GET failing. A tunnel with one session is reached through every edge
(forwarding between edges), and the forwarding endpoint refuses anything but a genuine edge token.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx
import jwt
import pytest
import trio
from dnslib import QTYPE, DNSRecord

from edge.access.keys import Signer
from edge.forwarding import handshake
from edge.forwarding.edges import peer_client_context
from edge.tunnels.membership import HEARTBEAT_INTERVAL
from shared import protocol
from shared.credentials import load_account_cert
from shared.events import RequestHead
from shared.transport import TunnelConnection
from tests.e2e.cluster import EDGE_IPS, Cluster, start_cluster
from tests.e2e.conftest import ZONE, start_origin, wait_until
from tests.e2e.test_metrics import metrics_port, scrape
from tests.pg import pg_server  # noqa: F401  (fixture)

APP = f"app.{ZONE}"
PROPAGATION_ROUNDS = 10
LOAD_RATE = 20  # GETs per second, spread over the edges
LOAD_SECONDS = 30  # bounded: 600 GETs at most


def start_connector(cluster: Cluster, tmp: Path):
    """alice logs in on edge-1, creates and routes a tunnel; a connector (4 sessions) serves an origin."""
    first = cluster.edges[0]
    env = first.login("alice")
    first.cli("burrow", "tunnel", "create", "web", env=env)
    first.cli("burrow", "tunnel", "route", "dns", "web", APP, env=env)
    origin, origin_port = start_origin(tmp, env)
    first.procs.append(origin)
    config = Path(env["BURROW_HOME"]) / "config.yml"
    config.write_text(f"tunnel: web\ningress:\n  - service: http://127.0.0.1:{origin_port}\n")
    connector = first.start(["burrow", "tunnel", "run", "--config", config, "web"], "connector", env)
    connector.wait_for_log(r"tunnel\.registered index=", count=4)
    return env, connector


def session_edges(connector) -> dict[int, str]:
    """Connection index → the edge address its latest registration went to."""
    found = {}
    for index, ip in re.findall(r"tunnel\.registered index=(\d+) \S+ edge=([\d.]+):\d+", connector.log()):
        found[int(index)] = ip
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pg_server):  # noqa: F811
    tmp = tmp_path_factory.mktemp("cluster")
    cluster = start_cluster(tmp, pg_server, serve_args=("--metrics", "127.0.0.1:0"))
    try:
        env, connector = start_connector(cluster, tmp)
        cluster.env, cluster.connector = env, connector
        yield cluster
    finally:
        cluster.stop()


def test_connector_sessions_spread_over_at_least_two_edges(cluster: Cluster) -> None:
    edges = session_edges(cluster.connector)
    assert len(edges) == 4 and len(set(edges.values())) >= 2, edges
    listed = cluster.edges[2].cli("burrow-edge", "edges", "list", "--home", cluster.edges[2].home).stdout
    for edge in cluster.edges:
        assert re.search(rf"{edge.name}\s+live\s+{edge.ip}\s", listed), listed


def test_curl_through_every_edge_reaches_the_origin(cluster: Cluster) -> None:
    for edge in cluster.edges:
        result = edge.curl(APP, "/hello", "-i")
        assert result.returncode == 0 and b" 200 " in result.stdout.split(b"\r\n")[0], (edge.name, result)
        assert b"/hello" in result.stdout  # the origin echoes the path


def test_dig_against_each_edge_answers_the_same_records(cluster: Cluster) -> None:
    every_edge = sorted(EDGE_IPS)
    first = cluster.edges[0]
    assert first.dig(ZONE, "A") == every_edge
    assert first.dig(f"ns1.{ZONE}", "A") == every_edge
    assert first.dig(ZONE, "NS") == [f"ns1.{ZONE}."]
    app = first.dig(APP, "A")  # the CNAME to the tunnel target, and every edge
    assert [entry for entry in app if not entry.endswith(".")] == every_edge
    assert [entry for entry in app if entry.endswith(f".tunnels.{ZONE}.")], app
    questions = ((ZONE, "A"), (ZONE, "NS"), (f"ns1.{ZONE}", "A"), (APP, "A"))
    # An edge learns of edges started after it at its next heartbeat (HEARTBEAT_INTERVAL).
    wait_until(
        lambda: all(edge.dig(name, rtype) == first.dig(name, rtype) for edge in cluster.edges[1:] for name, rtype in questions),
        3 * HEARTBEAT_INTERVAL, "every edge to answer the same records",
    )


def dns_answers(ip: str, port: int, name: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        sock.sendto(DNSRecord.question(name, "A").pack(), (ip, port))
        reply = DNSRecord.parse(sock.recv(4096))
    return any(rr.rtype == QTYPE.A for rr in reply.rr)


def routes_to_origin(ip: str, port: int, name: str, context: ssl.SSLContext) -> bool:
    with socket.create_connection((ip, port), timeout=2) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(f"GET /probe HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        return tls.recv(64).startswith(b"HTTP/1.1 200")


def test_a_route_added_on_edge_a_answers_and_routes_on_edge_c(cluster: Cluster) -> None:
    a, c = cluster.edges[0], cluster.edges[2]
    token = load_account_cert(Path(cluster.env["BURROW_HOME"]) / "cert.pem").api_token.value.decode()
    context = ssl.create_default_context(cafile=str(c.ca))
    dns_delays, route_delays = [], []
    with httpx.Client(base_url=a.url, verify=ssl.create_default_context(cafile=str(a.ca)), headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        for round_ in range(PROPAGATION_ROUNDS):
            host = f"new{round_}.{ZONE}"
            assert not dns_answers(c.ip, c.dns_port, host)
            assert api.put("/api/v1/routes/dns", json={"tunnel": "web", "hostname": host}).status_code == 200
            written = time.monotonic()
            dns_seen = route_seen = None
            while (dns_seen is None or route_seen is None) and time.monotonic() - written < 10:
                # each figure is taken when its first successful probe returns: an upper bound
                if dns_seen is None and dns_answers(c.ip, c.dns_port, host):
                    dns_seen = time.monotonic() - written
                if route_seen is None and routes_to_origin(c.ip, c.https_port, host, context):
                    route_seen = time.monotonic() - written  # includes a TLS handshake (~50 ms here)
                time.sleep(0.005)
            assert dns_seen is not None and route_seen is not None, f"{host} not live on edge C after 10 s"
            dns_delays.append(dns_seen)
            route_delays.append(route_seen)
    assert c.curl(f"new0.{ZONE}", "/").returncode == 0
    report = {
        "dns": (statistics.median(dns_delays) * 1000, max(dns_delays) * 1000),
        "routing": (statistics.median(route_delays) * 1000, max(route_delays) * 1000),
    }
    print(f"\nroute on edge A → edge C, {PROPAGATION_ROUNDS} rounds, median/max ms: "
          f"DNS {report['dns'][0]:.0f}/{report['dns'][1]:.0f}, routing {report['routing'][0]:.0f}/{report['routing'][1]:.0f}")


class Load:
    """GETs at LOAD_RATE per second, round robin over the edges, each a real curl (bounded)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.results: list[tuple[float, str, bool]] = []  # (sent at, edge name, succeeded)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        running: list[tuple[float, str, subprocess.Popen]] = []
        started = time.monotonic()
        for number in range(LOAD_RATE * LOAD_SECONDS):
            if self.stop.is_set():
                break
            edge = self.cluster.edges[number % len(self.cluster.edges)]
            command = [
                "curl", "-sS", "--http1.1", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(edge.ca),
                "--resolve", f"{APP}:{edge.https_port}:{edge.ip}", f"https://{APP}:{edge.https_port}/load",
            ]
            running.append((time.monotonic(), edge.name, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)))
            time.sleep(max(0.0, started + (number + 1) / LOAD_RATE - time.monotonic()))
        for sent, name, proc in running:
            out, _ = proc.communicate(timeout=20)
            self.results.append((sent, name, out == b"200"))


@pytest.fixture
def fresh_cluster(tmp_path: Path, pg_server):  # noqa: F811
    cluster = start_cluster(tmp_path, pg_server)
    try:
        cluster.env, cluster.connector = start_connector(cluster, tmp_path)
        yield cluster
    finally:
        cluster.stop()


def test_kill_9_of_the_busiest_edge_under_load(fresh_cluster: Cluster) -> None:
    cluster = fresh_cluster
    before = session_edges(cluster.connector)
    counts = {ip: list(before.values()).count(ip) for ip in set(before.values())}
    busiest = next(edge for edge in cluster.edges if edge.ip == max(counts, key=counts.get))
    survivors = [edge for edge in cluster.edges if edge is not busiest]
    moved = [index for index, ip in before.items() if ip == busiest.ip]
    load = Load(cluster)
    load.thread.start()
    time.sleep(5)
    registered_before = len(re.findall(r"tunnel\.registered", cluster.connector.log()))
    busiest.proc.popen.send_signal(signal.SIGKILL)
    killed = time.monotonic()

    def back() -> bool:
        now = session_edges(cluster.connector)
        fresh = len(re.findall(r"tunnel\.registered", cluster.connector.log())) - registered_before
        return fresh >= len(moved) and all(now[i] != busiest.ip for i in moved)

    wait_until(back, 30, "the sessions to come back on the surviving edges")
    sessions_back = time.monotonic() - killed
    left_dns = None
    while time.monotonic() - killed < 45:
        if all(busiest.ip not in edge.dig(ZONE, "A") for edge in survivors):
            left_dns = time.monotonic() - killed
            break
        time.sleep(0.25)
    load.stop.set()
    load.thread.join(timeout=60)
    through_survivors = [ok for sent, name, ok in load.results if name != busiest.name]
    failed = through_survivors.count(False)
    dead_edge = [ok for sent, name, ok in load.results if name == busiest.name and sent > killed + 1]
    print(f"\nkill -9 {busiest.name} ({len(moved)} of 4 sessions): {len(through_survivors)} GETs through the survivors, "
          f"{failed} failed; sessions back in {sessions_back:.1f} s; out of DNS in "
          f"{'never' if left_dns is None else f'{left_dns:.1f} s'}; GETs to the dead edge after the kill: {len(dead_edge)}, "
          f"all failed: {not any(dead_edge)}")
    assert len(through_survivors) >= LOAD_RATE * 10 * 2 // 3
    assert failed == 0
    assert set(session_edges(cluster.connector).values()) <= {edge.ip for edge in survivors}
    assert left_dns is not None, "the dead edge is still in DNS after 45 s"
    listed = survivors[0].cli("burrow-edge", "edges", "list", "--home", survivors[0].home).stdout
    assert re.search(rf"{busiest.name}\s+dead", listed), listed


def test_an_edge_that_joins_later_gets_sessions_and_no_get_fails(tmp_path: Path, pg_server) -> None:  # noqa: F811
    """A connector that registered while its edge was alone: when a second edge joins, the first
    tells it (an `edges` stream) and it moves every other session there, one at a time, each
    drained first, while GETs go on through both edges."""
    first_ip, second_ip = EDGE_IPS[:2]
    cluster = start_cluster(tmp_path, pg_server, ips=(first_ip,))
    try:
        cluster.env, cluster.connector = start_connector(cluster, tmp_path)
        assert list(session_edges(cluster.connector).values()) == [first_ip] * 4
        load = Load(cluster)
        load.thread.start()
        time.sleep(2)
        cluster.add_edge(second_ip)
        joined = time.monotonic()

        def spread() -> bool:
            return [session_edges(cluster.connector).get(index) for index in range(4)] == [first_ip, second_ip] * 2

        wait_until(spread, 30, "the connector's sessions on both edges")
        moved_in = time.monotonic() - joined
        time.sleep(3)  # GETs through both edges, on the new sessions
        load.stop.set()
        load.thread.join(timeout=60)
        failed = [(sent, name) for sent, name, ok in load.results if not ok]
        print(f"\nedge-2 joined: sessions spread in {moved_in:.1f} s; {len(load.results)} GETs, {len(failed)} failed")
        assert failed == [] and len(load.results) >= LOAD_RATE * 4
        log = cluster.connector.log()
        assert len(re.findall(r"tunnel\.moving index=\d+ from=127\.0\.0\.11:\d+ to=127\.0\.0\.12:", log)) == 2, log
        assert "tunnel.retrying" not in log, log
        assert re.search(r"edge\.members_told connectors=1 answered=1 ", cluster.edges[0].proc.log())
    finally:
        cluster.stop()


SOLO = f"solo.{ZONE}"
VISITOR_IP = "127.0.0.5"  # curl's source address: what X-Forwarded-For must say after the extra hop


@pytest.fixture(scope="module")
def solo(cluster: Cluster, tmp_path_factory):
    """A tunnel with one session, on edge-1, serving an origin that records every request it gets."""
    first = cluster.edges[0]
    tmp = tmp_path_factory.mktemp("solo")
    receipts = tmp / "receipts"
    receipts.touch()
    first.cli("burrow", "tunnel", "create", "solo", env=cluster.env)
    first.cli("burrow", "tunnel", "route", "dns", "solo", SOLO, env=cluster.env)
    origin, origin_port = start_origin(tmp, {**cluster.env, "ORIGIN_RECEIPTS": str(receipts)})
    first.procs.append(origin)
    config = Path(cluster.env["BURROW_HOME"]) / "solo.yml"
    config.write_text(f"tunnel: solo\ningress:\n  - service: http://127.0.0.1:{origin_port}\n")
    connector = first.start(["burrow", "tunnel", "run", "--config", config, "--ha-connections", "1", "solo"], "connector-solo", cluster.env)
    connector.wait_for_log(r"tunnel\.registered index=0 \S+ edge=127\.0\.0\.11:")
    try:
        yield receipts
    finally:
        connector.stop()


def test_an_edge_without_a_session_of_the_tunnel_forwards_to_the_edge_with_one(cluster: Cluster, solo: Path) -> None:
    """One session, on edge-1: curl through every edge reaches the origin, which sees curl's
    address; the other edges count what they forwarded, edge-1 what it served for them."""
    before = [scrape(metrics_port(edge.proc)) for edge in cluster.edges]
    for edge in cluster.edges:
        for number in range(3):
            result = edge.curl(SOLO, f"/via-{edge.name}-{number}", "--interface", VISITOR_IP, "-H", f"Burrow-Request-Id: {edge.name}-{number}")
            assert result.returncode == 0, (edge.name, result.stderr)
            echo = json.loads(result.stdout)
            assert echo["target"] == f"/via-{edge.name}-{number}", echo
            headers = {name.lower(): value for name, value in echo["headers"]}
            assert headers["x-forwarded-for"] == VISITOR_IP, (edge.name, headers)
            assert headers["burrow-request-id"] == f"{edge.name}-{number}"
    after = [scrape(metrics_port(edge.proc)) for edge in cluster.edges]

    def grew(index: int, name: str) -> float:
        return after[index].get((name, ()), 0) - before[index].get((name, ()), 0)

    assert [grew(i, "burrow_edge_peer_forwarded_requests_total") for i in range(3)] == [0, 3, 3]
    assert [grew(i, "burrow_edge_peer_served_requests_total") for i in range(3)] == [6, 0, 0]
    received = solo.read_text().split("\n")
    assert all(f"GET {edge.name}-{number}" in received for edge in cluster.edges for number in range(3)), received
    unrouted = cluster.edges[1].curl(f"elsewhere.{ZONE}", "/", "-o", "/dev/null", "-w", "%{http_code}")
    assert unrouted.stdout == b"404"  # a hostname the registry does not route is never sent anywhere


def test_a_forwarded_upload_over_http2_streams_whole(cluster: Cluster, solo: Path, tmp_path: Path) -> None:
    body = tmp_path / "body"
    body.write_bytes(os.urandom(8 * 1024 * 1024))
    result = cluster.edges[2].curl(SOLO, "/upload", "--http2", "-X", "POST", "--data-binary", f"@{body}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"sha256": hashlib.sha256(body.read_bytes()).hexdigest(), "length": 8 * 1024 * 1024}


def run_id(edge) -> str:
    return re.search(r"edge\.listening .* edge=([0-9a-f-]{36}) ", edge.proc.log()).group(1)


async def peer_request(edge, token: str, request_id: str) -> tuple[bytes, int | None, bytes]:
    """Dial `edge`'s forwarding endpoint as another edge would, present `token`, and send a GET
    for SOLO at once (without waiting for the answer): (the hello's answer, status, body)."""
    tcp = await trio.open_tcp_stream(edge.ip, edge.tunnel_port)
    tls = trio.SSLStream(tcp, peer_client_context(edge.ca.read_text()), server_hostname=ZONE)
    await tls.do_handshake()
    await tls.send_all(handshake.hello(token))
    session = TunnelConnection(tls, protocol.TunnelSession("edge"))
    head = RequestHead(b"GET", f"/peer-{request_id}".encode(), SOLO.encode(), b"https", (
        (b"host", SOLO.encode()), (b"x-forwarded-for", b"198.18.0.7"), (b"burrow-request-id", request_id.encode()),
    ), False)
    answer, status, body = b"", None, b""
    with trio.fail_after(15):
        while len(answer) < 3 and (data := await tls.receive_some(3 - len(answer))):
            answer += data
        if answer != handshake.ACCEPTED:
            await trio.aclose_forcefully(tls)
            return answer, None, b""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.serve)
            async with await session.open_stream(head) as stream:
                status = (await stream.receive_response()).status
                while chunk := await stream.receive():
                    body += chunk
            nursery.cancel_scope.cancel()
    await trio.aclose_forcefully(tls)
    return answer, status, body


def test_the_forwarding_endpoint_refuses_forged_tokens_and_never_forwards_twice(cluster: Cluster, solo: Path, tmp_path: Path) -> None:
    first, second, third = cluster.edges
    real = Signer.load_or_create(second.home, "unused")  # edge-2's own key, published in the registry
    forger = Signer.load_or_create(tmp_path, "unused")  # a key the registry never saw
    expired = handshake.peer_token(real, second.name, run_id(first), now=time.time() - 3600)
    forged = {
        "unsigned": "not-a-jwt",
        "unknown key": handshake.peer_token(forger, second.name, run_id(first)),
        "another edge's audience": handshake.peer_token(real, second.name, run_id(third)),
        "expired": expired,
        "alg none": jwt.encode({"iss": handshake.ISSUER, "sub": "x", "aud": run_id(first), "exp": int(time.time()) + 60, "iat": int(time.time())},
                               None, algorithm="none", headers={"kid": real.kid}),
    }
    refused_before = scrape(metrics_port(first.proc))[("burrow_edge_peer_connections_total", (("result", "refused"),))]
    for case, token in forged.items():
        answer, status, _ = trio.run(peer_request, first, token, f"forged-{len(case)}")
        assert answer == handshake.REFUSED and status is None, (case, answer)
    refused = scrape(metrics_port(first.proc))[("burrow_edge_peer_connections_total", (("result", "refused"),))] - refused_before
    assert refused == len(forged)
    assert "forged" not in solo.read_text()  # the GETs sent right after the hellos never reached the origin
    # A genuine token at edge-3, which holds no session of the tunnel: it answers 502 itself, never a second hop.
    answer, status, body = trio.run(peer_request, third, handshake.peer_token(real, second.name, run_id(third)), "twice")
    assert answer == handshake.ACCEPTED and status == 502 and b"has no connector" in body, (answer, status, body[:200])
    assert "twice" not in solo.read_text()
    # The same at edge-1, which holds it: served, with the X-Forwarded-For the sending edge wrote.
    answer, status, body = trio.run(peer_request, first, handshake.peer_token(real, second.name, run_id(first)), "genuine")
    assert answer == handshake.ACCEPTED and status == 200, (answer, status, body[:200])
    headers = {name.lower(): value for name, value in json.loads(body)["headers"]}
    assert headers["x-forwarded-for"] == "198.18.0.7"
    assert "GET genuine" in solo.read_text().split("\n")


def test_a_forwarded_request_outlives_the_holders_sigterm(fresh_cluster: Cluster) -> None:
    """SIGTERM of the edge holding the only session while a slow request forwarded to it runs:
    the request finishes within the grace period; afterwards edge-2 answers at once (from the
    session's new place, or 502), never waiting on the gone edge."""
    cluster = fresh_cluster
    first, second = cluster.edges[0], cluster.edges[1]
    cluster.connector.stop()  # its 4 sessions are spread: keep a single one, on edge-1
    first.cli("burrow", "tunnel", "route", "dns", "web", SOLO, env=cluster.env)
    config = Path(cluster.env["BURROW_HOME"]) / "config.yml"
    solo = first.start(["burrow", "tunnel", "run", "--config", config, "--ha-connections", "1", "web"], "connector-one", cluster.env)
    try:
        solo.wait_for_log(r"tunnel\.registered index=0 \S+ edge=127\.0\.0\.11:")
        wait_until(lambda: second.curl(SOLO, "/", "-o", "/dev/null", "-w", "%{http_code}").stdout == b"200", 15, "edge-2 to forward")
        command = [
            "curl", "-sS", "--http1.1", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(second.ca),
            "--resolve", f"{SOLO}:{second.https_port}:{second.ip}", f"https://{SOLO}:{second.https_port}/slow?delay=3",
        ]
        slow = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1)
        first.proc.popen.send_signal(signal.SIGTERM)
        out, err = slow.communicate(timeout=40)
        assert out == b"200", (out, err)
        first.proc.popen.wait(timeout=30)
        started = time.monotonic()
        after = second.curl(SOLO, "/", "-o", "/dev/null", "-w", "%{http_code}", timeout=20)
        assert after.stdout in (b"200", b"502") and time.monotonic() - started < 10, (after, time.monotonic() - started)
    finally:
        solo.stop()
