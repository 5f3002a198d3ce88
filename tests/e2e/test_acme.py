"""ACME against pebble on loopback: DNS-01 through the edge's own DNS, HTTP-01, TLS-ALPN-01,
renewal under an open connection, and failures (CA stopped, TXT withheld, port 80 closed, not an ACME directory) that keep the certificates in service.

Pebble issues 30-second certificates here, so the edge renews every 20 s (two thirds).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import trustme
from dnslib import QTYPE
from dnslib.proxy import ProxyResolver
from dnslib.server import DNSServer

from tests.e2e.conftest import BIN, START_TIMEOUT, ZONE, Edge, Proc, free_port, start_origin, wait_until

pytestmark = pytest.mark.skipif(shutil.which("pebble") is None, reason="pebble is not installed (make system-deps)")

CERT_SECONDS = 30
HTTP01_NAME = "alt.test"  # a second zone's apex: the edge's DNS gives pebble its address
TLSALPN_NAME = f"ns1.{ZONE}"


class Pebble:
    """pebble with a trustme TLS certificate, validating against the given ports and DNS server."""

    def __init__(self, tmp: Path, dns_port: int, http_port: int, tls_port: int, cert_seconds: int = CERT_SECONDS) -> None:
        self.tmp = tmp
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        server.private_key_pem.write_to_path(str(tmp / "pebble-key.pem"))
        server.cert_chain_pems[0].write_to_path(str(tmp / "pebble-cert.pem"))
        self.ca.cert_pem.write_to_path(str(tmp / "pebble-ca.pem"))
        self.port, self.management_port = free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(tmp / "pebble-cert.pem"),
                "privateKey": str(tmp / "pebble-key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "certificateValidityPeriod": cert_seconds,
            }
        }
        (tmp / "pebble.json").write_text(json.dumps(config))
        env = {key: value for key, value in os.environ.items() if not key.startswith("PEBBLE")}
        env["PEBBLE_VA_NOSLEEP"] = "1"
        self.args = ["pebble", "-config", str(tmp / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"]
        self.env = env
        self.proc: Proc | None = None

    @property
    def ca_file(self) -> Path:
        return self.tmp / "pebble-ca.pem"

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> None:
        self.proc = Proc(self.args, self.tmp / "pebble.log", self.env)
        wait_until(lambda: _accepts(self.port), START_TIMEOUT, "pebble to listen")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def root(self) -> str:
        """The issuing root, from pebble's management endpoint."""
        return httpx.get(f"https://127.0.0.1:{self.management_port}/roots/0", verify=ssl.create_default_context(cafile=str(self.ca_file))).text


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class AcmeEdge(Edge):
    """An edge whose clients trust pebble's root (names) and a trustme CA (its IP address,
    where the CLI logs in by `https://127.0.0.1:PORT`) instead of a dev CA."""

    @property
    def ca(self) -> Path:
        return self.tmp / "clients-ca.pem"

    @property
    def root(self) -> Path:
        return self.tmp / "pebble-root.pem"


class PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with SNI and verification for `host` (no name resolution)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=10)
        self.tls_context = context

    def connect(self) -> None:
        self.sock = self.tls_context.wrap_socket(socket.create_connection(("127.0.0.1", self.port), self.timeout), server_hostname=self.host)


def start_acme_edge(
    tmp: Path, pebble_for, *, challenges: dict | None = None, extra_init=(), prepare=None, serve_args=(),
) -> tuple[AcmeEdge, Pebble]:
    """pebble (made by `pebble_for(dns_port, http_port, tls_port)`), then `burrow-edge init` with
    its directory and `serve`; returns once the edge listens (certificates come later)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
    env["BURROW_HOME"] = str(tmp / "nobody")
    https_port, http_port, dns_port = free_port(), free_port(), free_port()
    pebble = pebble_for(dns_port, http_port, https_port)
    pebble.start()
    home = tmp / "edge"
    subprocess.run(
        [
            BIN / "burrow-edge", "init", "--home", home, "--zone", ZONE, "--zone", HTTP01_NAME, "--public-ip", "127.0.0.1",
            "--https-listen", f"127.0.0.1:{https_port}", "--tunnel-listen", "127.0.0.1:0", "--dns-listen", f"127.0.0.1:{dns_port}",
            "--http-listen", f"127.0.0.1:{http_port}", "--acme-directory", pebble.directory,
            "--acme-email", "ops@example.test", "--acme-ca-file", pebble.ca_file, *extra_init,
        ],
        check=True, capture_output=True, env=env,
    )
    with open(home / "edge.yml", "a") as config:
        config.write("acme-retry: 1s\n")
        if challenges:
            config.write("acme-challenges:\n" + "".join(f"  {name}: {kind}\n" for name, kind in challenges.items()))
    if prepare is not None:
        prepare(home)
    proc = Proc([BIN / "burrow-edge", "serve", "--home", home, *serve_args], tmp / "edge.log", env)
    wait_until(lambda: (home / "listen.json").exists() or not proc.alive(), START_TIMEOUT, "the edge to listen")
    addresses = json.loads((home / "listen.json").read_text())
    tunnel = int(addresses["tunnel"].rsplit(":", 1)[1])
    edge = AcmeEdge(home, env, proc, https_port, tunnel, dns_port, tmp)
    edge.procs.append(proc)
    return edge, pebble


def peer_certificate(port: int, server_name: str, root: str | None = None, alpn: str | None = None) -> bytes:
    """The DER certificate the edge shows for `server_name` (verified against `root` when given)."""
    context = ssl.create_default_context(cadata=root) if root else ssl._create_unverified_context()
    if alpn:
        context.set_alpn_protocols([alpn])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return tls.getpeercert(binary_form=True)


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def cert_names(der: bytes) -> list[str]:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acme")
    ip_ca = trustme.CA()
    ip_cert = ip_ca.issue_cert("127.0.0.1")
    ip_cert.cert_chain_pems[0].write_to_path(str(tmp / "ip.pem"))
    ip_cert.private_key_pem.write_to_path(str(tmp / "ip.key"))

    def add_ip_cert(home):
        subprocess.run([BIN / "burrow-edge", "cert", "add", "--home", home, tmp / "ip.pem", tmp / "ip.key"], check=True, capture_output=True)

    edge, pebble = start_acme_edge(
        tmp, lambda dns, http, tls: Pebble(tmp, dns, http, tls),
        challenges={HTTP01_NAME: "http-01", TLSALPN_NAME: "tls-alpn-01"}, prepare=add_ip_cert,
    )
    try:
        edge.proc.wait_for_log(r"acme\.issued name=", count=3, timeout=60)
        edge.root.write_text(pebble.root())
        edge.ca.write_text(edge.root.read_text() + ip_ca.cert_pem.bytes().decode())
        yield edge, pebble
    finally:
        for proc in reversed(edge.procs):
            proc.stop()
        pebble.stop()


@pytest.fixture(scope="module")
def routed(acme):
    """A tunnel with a connector and an origin behind app.ZONE, reached through the ACME wildcard."""
    edge, _ = acme
    env = edge.login("alice")
    edge.cli("burrow", "tunnel", "create", "web", env=env)
    edge.cli("burrow", "tunnel", "route", "dns", "web", f"app.{ZONE}", env=env)
    origin, origin_port = start_origin(edge.tmp, env)
    edge.procs.append(origin)
    config = Path(env["BURROW_HOME"]) / "config.yml"
    config.write_text(f"tunnel: web\ningress:\n  - hostname: app.{ZONE}\n    service: http://127.0.0.1:{origin_port}\n  - service: http_status:404\n")
    connector = edge.start(["burrow", "tunnel", "run", "--config", config, "web"], "connector", env)
    connector.wait_for_log(r"tunnel\.registered index=", count=1)
    return edge


def test_dns01_wildcard_serves_a_routed_hostname(acme, routed):
    edge, _ = acme
    log = edge.proc.log()
    assert re.search(r"acme\.challenge name=\*\.example\.test type=dns-01", log)
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--cacert", edge.root, "--resolve", f"app.{ZONE}:{edge.https_port}:127.0.0.1",
         f"https://app.{ZONE}:{edge.https_port}/hello"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["target"] == "/hello"
    served = peer_certificate(edge.https_port, f"app.{ZONE}", edge.root.read_text())
    assert sorted(cert_names(served)) == sorted([f"*.{ZONE}", ZONE])
    assert oct((edge.home / "acme" / "account.key").stat().st_mode & 0o777) == "0o600"
    listing = edge.cli("burrow-edge", "cert", "list", "--home", edge.home).stdout
    assert re.search(rf"^{re.escape(ZONE)}  acme  expires", listing, re.M)


def test_http01_and_tls_alpn01_each_get_a_certificate(acme):
    edge, _ = acme
    log = edge.proc.log()
    assert f"acme.challenge name={HTTP01_NAME} type=http-01" in log
    assert "http.acme_challenge_answered" in log
    assert f"acme.challenge name={TLSALPN_NAME} type=tls-alpn-01" in log
    root = edge.root.read_text()
    assert cert_names(peer_certificate(edge.https_port, HTTP01_NAME, root)) == [HTTP01_NAME]
    # SNI: the exact certificate wins over the zone's wildcard, which covers every other name
    assert cert_names(peer_certificate(edge.https_port, TLSALPN_NAME, root)) == [TLSALPN_NAME]
    assert sorted(cert_names(peer_certificate(edge.https_port, f"other.{ZONE}", root))) == sorted([f"*.{ZONE}", ZONE])
    # the plain-HTTP listener redirects everything else the edge serves (here: its own name)
    http_port = int(json.loads((edge.home / "listen.json").read_text())["http"].rsplit(":", 1)[1])
    answer = httpx.get(f"http://127.0.0.1:{http_port}/x?y=1", headers={"Host": ZONE})
    assert answer.status_code == 308
    assert answer.headers["location"] == f"https://{ZONE}:{edge.https_port}/x?y=1"


def test_renewal_under_an_open_connection(acme, routed):
    edge, _ = acme
    root = edge.root.read_text()
    connection = PinnedHTTPS(f"app.{ZONE}", edge.https_port, ssl.create_default_context(cadata=root))
    connection.connect()
    first = fingerprint(connection.sock.getpeercert(binary_form=True))
    renewed = None
    answers = 0
    deadline = time.monotonic() + CERT_SECONDS + 10
    while time.monotonic() < deadline:
        connection.request("GET", f"/tick{answers}", headers={"Host": f"app.{ZONE}"})
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["target"] == f"/tick{answers}"
        answers += 1
        current = fingerprint(peer_certificate(edge.https_port, f"app.{ZONE}", root))
        if current != first:
            renewed = current
            break
        time.sleep(0.5)
    assert renewed is not None, "no renewal within the certificate's lifetime"
    connection.request("GET", "/after", headers={"Host": f"app.{ZONE}"})  # the old connection still answers
    assert connection.getresponse().status == 200
    assert fingerprint(connection.sock.getpeercert(binary_form=True)) == first
    connection.close()
    assert "renewal=True" in edge.proc.log()


def test_a_removed_acme_certificate_is_obtained_again(acme):
    edge, _ = acme
    # remove just after a renewal landed: a renewal still in flight would write the certificate back
    # (rightly), and the next one is 20 s away, while the manager notices a removal within 5 s
    issued = rf"acme\.issued name={re.escape(TLSALPN_NAME)} "
    edge.proc.wait_for_log(issued, count=len(re.findall(issued, edge.proc.log())) + 1, timeout=CERT_SECONDS + 30)
    removed = edge.cli("burrow-edge", "cert", "remove", "--home", edge.home, TLSALPN_NAME)
    assert "ACME manages this certificate" in removed.stdout
    ordered = rf"acme\.ordering name={re.escape(TLSALPN_NAME)} \S+ challenge=tls-alpn-01 renewal=False"
    # ordered anew (the first time was at start); at once, or after the retry delay of a failed attempt
    edge.proc.wait_for_log(ordered, count=2, timeout=90)

    def reissued():
        log = edge.proc.log()
        after = log[[m.start() for m in re.finditer(ordered, log)][1]:]
        return re.search(rf"acme\.issued name={re.escape(TLSALPN_NAME)} ", after)

    wait_until(reissued, 60, "the certificate to be obtained again")
    assert cert_names(peer_certificate(edge.https_port, TLSALPN_NAME, edge.root.read_text())) == [TLSALPN_NAME]


def test_pebble_stopped_keeps_serving_and_reports(acme, routed):
    edge, pebble = acme
    pebble.stop()
    edge.proc.wait_for_log(r"acme\.failed name=.* failures=1 ", timeout=CERT_SECONDS)
    result = edge.curl(f"app.{ZONE}", "/still")  # at once: the kept certificate has a third of its 30 s left
    assert result.returncode == 0, result.stderr
    edge.proc.wait_for_log(r"acme\.failed name=.* failures=2 ", timeout=CERT_SECONDS)
    log = edge.proc.log()
    assert re.search(r"acme\.failed name=\S+ failures=1 retry_in=\d+s keeps_serving=[0-9a-f]{12} reason=.*cannot reach", log)
    status = edge.cli("burrow-edge", "cert", "status", "--home", edge.home).stdout
    assert "last failure:" in status and "cannot reach" in status
    assert re.search(r"next renewal: \d{4}-", status)


class WithholdTxt(ProxyResolver):
    """Pebble's resolver: the edge's answers, except TXT (the DNS-01 answer never reaches the CA)."""

    def resolve(self, request, handler):
        if request.q.qtype == QTYPE.TXT:
            return request.reply()
        return super().resolve(request, handler)


def test_unvalidatable_challenges_retry_with_backoff_and_keep_other_certificates(tmp_path):
    """TXT withheld from the CA (DNS-01) and port 80 closed (HTTP-01): failures, backoff, status; a file certificate stays."""
    resolvers = []

    def withholding_pebble(dns, http, tls):
        resolver = DNSServer(WithholdTxt("127.0.0.1", dns, timeout=2), port=free_port(), address="127.0.0.1")
        resolver.start_thread()
        resolvers.append(resolver)
        return Pebble(tmp_path, resolver.server.server_address[1], free_port(), tls)  # nothing listens on its HTTP port

    ca = trustme.CA()
    leaf = ca.issue_cert(f"static.{ZONE}")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "static.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "static.key"))

    def add_static(home):
        subprocess.run([BIN / "burrow-edge", "cert", "add", "--home", home, tmp_path / "static.pem", tmp_path / "static.key"], check=True, capture_output=True)

    edge, pebble = start_acme_edge(tmp_path, withholding_pebble, challenges={HTTP01_NAME: "http-01"}, prepare=add_static)
    try:
        edge.proc.wait_for_log(rf"acme\.failed name={re.escape(ZONE)} failures=2 ", timeout=40)
        edge.proc.wait_for_log(rf"acme\.failed name={re.escape(HTTP01_NAME)} failures=1 ", timeout=20)
        delays = re.findall(rf"acme\.failed name={re.escape(ZONE)} failures=\d retry_in=(\d+)s", edge.proc.log())
        assert delays[:2] == ["1", "2"]  # acme-retry 1 s, then doubled (±20 %, rounded)
        root = ca.cert_pem.bytes().decode()
        assert cert_names(peer_certificate(edge.https_port, f"static.{ZONE}", root)) == [f"static.{ZONE}"]
        status = edge.cli("burrow-edge", "cert", "status", "--home", edge.home).stdout
        assert re.search(rf"^{re.escape(ZONE)}  source=acme .*not issued yet", status, re.M)
        assert re.search(r"last failure: .*validating \S+ by dns-01 failed", status)
        assert re.search(r"last failure: .*validating alt\.test by http-01 failed: .*(refused|connect)", status)
        assert re.search(r"^static\.example\.test  source=file", status, re.M)
    finally:
        edge.proc.stop()
        pebble.stop()
        for resolver in resolvers:
            resolver.stop()


def test_a_directory_that_is_not_acme(tmp_path):
    def not_acme(dns, http, tls):
        pebble = Pebble(tmp_path, dns, http, tls)
        pebble.port = pebble.management_port  # the edge is pointed at …/dir on the management listener: 404
        return pebble

    edge, pebble = start_acme_edge(tmp_path, not_acme)
    try:
        edge.proc.wait_for_log(r"acme\.failed name=", timeout=20)
        assert "is not an ACME directory (HTTP 404" in edge.proc.log()
        assert edge.proc.alive()
    finally:
        edge.proc.stop()
        pebble.stop()


def test_cert_add_on_a_running_edge(acme, tmp_path):
    """Refusals are covered in tests/edge/test_certs_store.py; here: a running edge picks up add and remove."""
    edge, _ = acme
    ca = trustme.CA()
    good = ca.issue_cert(f"shop.{ZONE}")
    good.cert_chain_pems[0].write_to_path(str(tmp_path / "shop.pem"))
    good.private_key_pem.write_to_path(str(tmp_path / "shop.key"))
    added = edge.cli("burrow-edge", "cert", "add", "--home", edge.home, tmp_path / "shop.pem", tmp_path / "shop.key")
    assert re.search(rf"Added shop\.{ZONE}: shop\.{ZONE}; expires \d{{4}}-", added.stdout)
    assert "does not trust" in added.stderr
    # the running edge picks it up (refresh every 2 s); the wildcard keeps serving the rest
    root = ca.cert_pem.bytes().decode()
    wait_until(lambda: cert_names(peer_certificate(edge.https_port, f"shop.{ZONE}")) == [f"shop.{ZONE}"], 15, "the added certificate")
    assert cert_names(peer_certificate(edge.https_port, f"shop.{ZONE}", root)) == [f"shop.{ZONE}"]
    edge.cli("burrow-edge", "cert", "remove", "--home", edge.home, f"shop.{ZONE}")
    wait_until(lambda: cert_names(peer_certificate(edge.https_port, f"shop.{ZONE}")) != [f"shop.{ZONE}"], 15, "the removal")


def test_quick_tunnels_get_their_own_wildcard_certificate(tmp_path):
    """With --quick-tunnels the edge also obtains *.quick.ZONE (DNS-01), which *.ZONE cannot
    cover; curl reaches a quick tunnel trusting pebble's root alone."""
    ip_ca = trustme.CA()  # the connector asks https://127.0.0.1:PORT for its quick tunnel
    ip_cert = ip_ca.issue_cert("127.0.0.1")
    ip_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "ip.pem"))
    ip_cert.private_key_pem.write_to_path(str(tmp_path / "ip.key"))

    def add_ip_cert(home):
        subprocess.run([BIN / "burrow-edge", "cert", "add", "--home", home, tmp_path / "ip.pem", tmp_path / "ip.key"], check=True, capture_output=True)

    edge, pebble = start_acme_edge(
        tmp_path, lambda dns, http, tls: Pebble(tmp_path, dns, http, tls), prepare=add_ip_cert, serve_args=("--quick-tunnels",),
    )
    try:
        edge.proc.wait_for_log(r"acme\.issued name=", count=3, timeout=60)  # ZONE, the second zone, *.quick.ZONE
        assert re.search(r"acme\.issued name=_wildcard\.quick\." + re.escape(ZONE), edge.proc.log())
        edge.root.write_text(pebble.root())
        edge.ca.write_text(edge.root.read_text() + ip_ca.cert_pem.bytes().decode())
        origin, origin_port = start_origin(tmp_path, edge.env)
        edge.procs.append(origin)
        connector = edge.start(
            ["burrow", "tunnel", "--url", f"http://127.0.0.1:{origin_port}", "--edge", edge.url, "--ca-file", edge.ca],
            "quick", {**edge.env, "BURROW_HOME": str(tmp_path / "quick-home")},
        )
        connector.wait_for_log(r"tunnel\.registered index=")
        host = re.search(r"https://([a-z-]+\.quick\." + re.escape(ZONE) + ")", connector.log()).group(1)
        assert cert_names(peer_certificate(edge.https_port, host, edge.root.read_text())) == [f"*.quick.{ZONE}"]
        result = subprocess.run(
            ["curl", "-sS", "--cacert", str(edge.root), "--resolve", f"{host}:{edge.https_port}:127.0.0.1",
             "-o", "/dev/null", "-w", "%{http_code}", f"https://{host}:{edge.https_port}/"],
            capture_output=True, text=True, timeout=30,
        )
        assert result.stdout == "200", result.stderr
    finally:
        for proc in reversed(edge.procs):
            proc.stop()
        pebble.stop()
