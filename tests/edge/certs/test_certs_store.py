"""The certificate store, `cert add` checks, challenge answers and the ACME client's error handling."""

import datetime
import random
import re
import ssl

import httpx
import pytest
import trio
import trio.testing
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from dnslib import QTYPE, DNSRecord
from prometheus_client import generate_latest
from typer.testing import CliRunner

from edge.certs.acme import AcmeManager, retry_delay
from edge.certs.acme_client import AcmeClient, AcmeError
from edge.certs.acme_state import load_state, save_state
from edge.certs.challenges import ACME_IDENTIFIER_OID, ACME_TLS_ALPN, Challenges, dns01_value
from edge.certs.cli import acme_settings
from edge.certs.files import check_pair
from edge.certs.store import CertStore, remove_pair, write_pair
from edge.cli import app
from edge.dns.server import answer
from edge.dns.zone import Zone, Zones
from edge.routing.metrics import EdgeMetrics
from edge.visitors.http_redirect import respond
from shared.edge_config import EdgeConfig, load_edge_config
from shared.errors import ConfigError

ZONE = "example.test"


def pair(ca: trustme.CA, *names: str, **kwargs) -> tuple[bytes, bytes]:
    leaf = ca.issue_cert(*names, **kwargs)
    return b"".join(blob.bytes() for blob in leaf.cert_chain_pems), leaf.private_key_pem.bytes()


def add(store_dir, stem, ca, *names):
    chain, key = pair(ca, *names)
    write_pair(store_dir, stem, chain, key, "file")


async def served(context: ssl.SSLContext, server_name: str, alpn=("h2",)) -> tuple[list[str], str | None]:
    """Handshake over memory streams without verifying: the names the server's certificate lists, and ALPN."""
    client_ctx = ssl.create_default_context()
    client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
    client_ctx.set_alpn_protocols(list(alpn))
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = trio.SSLStream(client_transport, client_ctx, server_hostname=server_name)
    server = trio.SSLStream(server_transport, context, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    cert = x509.load_der_x509_certificate(client.getpeercert(binary_form=True))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    return names, client.selected_alpn_protocol()


@pytest.fixture
def store(tmp_path):
    ca = trustme.CA()
    add(tmp_path, "_wildcard.example.test", ca, f"*.{ZONE}", ZONE)
    add(tmp_path, "alice.example.test", ca, f"alice.{ZONE}")
    return CertStore.load(tmp_path, (ZONE,))


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        (f"alice.{ZONE}", f"alice.{ZONE}"),  # exact beats the wildcard
        (f"bob.{ZONE}", f"*.{ZONE}"),  # another tenant's name: the wildcard, never alice's
        (ZONE, f"*.{ZONE}"),
        (f"a.b.{ZONE}", f"*.{ZONE}"),  # covered by nothing: the zone's own certificate
        ("other.org", f"*.{ZONE}"),
    ],
)
async def test_sni_exact_over_wildcard_never_another_tenant(store, server_name, expected):
    names, alpn = await served(store.server_context(["h2", "http/1.1"]), server_name)
    assert names[0] == expected
    assert alpn == "h2"


async def test_unknown_name_without_zone_certificate_is_refused(tmp_path):
    add(tmp_path, "alice.example.test", trustme.CA(), f"alice.{ZONE}")
    store = CertStore.load(tmp_path, (ZONE,))
    with pytest.raises(ExceptionGroup) as info:
        await served(store.server_context(["h2"]), f"bob.{ZONE}")
    assert info.group_contains(ssl.SSLError) or info.group_contains(trio.BrokenResourceError)


async def test_hot_swap_keeps_open_connections(tmp_path, store):
    context = store.server_context(["h2"])
    assert (await served(context, f"carol.{ZONE}"))[0] == [f"*.{ZONE}", ZONE]
    add(tmp_path, "carol.example.test", trustme.CA(), f"carol.{ZONE}")
    assert store.refresh() == []
    assert (await served(context, f"carol.{ZONE}"))[0] == [f"carol.{ZONE}"]
    remove_pair(tmp_path, "carol.example.test")
    store.refresh()
    assert (await served(context, f"carol.{ZONE}"))[0] == [f"*.{ZONE}", ZONE]


async def test_a_broken_replacement_keeps_the_old_certificate(tmp_path, store):
    context = store.server_context(["h2"])
    (tmp_path / "alice.example.test.key").write_bytes(pair(trustme.CA(), "x.test")[1])  # caught mid-replacement
    problems = store.refresh()
    assert problems and "does not match" in problems[0]
    assert (await served(context, f"alice.{ZONE}"))[0] == [f"alice.{ZONE}"]


def test_check_pair_accepts_and_names(tmp_path):
    chain, key = pair(trustme.CA(), "www.example.test", "example.test")
    checked = check_pair(chain, key, "cert.pem", "key.pem")
    assert checked.names == ("www.example.test", "example.test")
    assert any("does not trust" in warning for warning in checked.warnings)


def test_check_pair_refusals():
    ca = trustme.CA()
    chain, key = pair(ca, "www.example.test")
    with pytest.raises(ConfigError, match="key.pem: this key does not match the certificate in cert.pem"):
        check_pair(chain, pair(ca, "www.example.test")[1], "cert.pem", "key.pem")
    now = datetime.datetime.now(datetime.timezone.utc)
    old_chain, old_key = pair(ca, "old.example.test", not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1))
    with pytest.raises(ConfigError, match="cert.pem: the certificate expired on"):
        check_pair(old_chain, old_key, "cert.pem", "key.pem")
    with pytest.raises(ConfigError, match="cert.pem: not a PEM certificate file"):
        check_pair(b"hello", key, "cert.pem", "key.pem")
    with pytest.raises(ConfigError, match="key.pem: not a PEM private key"):
        check_pair(chain, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "cert.pem", "key.pem")
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("deep.example.test")
    missing_intermediate = leaf.cert_chain_pems[0].bytes() + ca.cert_pem.bytes()  # the root where the intermediate belongs
    with pytest.raises(ConfigError, match="certificate 1 .* is not issued by certificate 2 .*order the file leaf first"):
        check_pair(missing_intermediate, leaf.private_key_pem.bytes(), "cert.pem", "key.pem")
    assert check_pair(b"".join(p.bytes() for p in leaf.cert_chain_pems), leaf.private_key_pem.bytes(), "c", "k").names


def test_retry_backoff_grows_with_jitter_and_honours_retry_after():
    rng = random.Random(1)
    delays = [retry_delay(n, 60, None, rng) for n in range(1, 6)]
    assert all(0.8 * 60 * 2 ** i <= d <= 1.2 * 60 * 2 ** i for i, d in enumerate(delays))
    assert retry_delay(30, 60, None, rng) <= 6 * 3600 * 1.2
    assert retry_delay(1, 60, 7200, rng) == 7200


def test_dns_answers_pending_challenges():
    challenges = Challenges()
    query = DNSRecord.question(f"_acme-challenge.{ZONE}", "TXT").pack()
    zones = Zones((Zone(ZONE, {f"*.{ZONE}": f"x.tunnels.{ZONE}"}),))  # a wildcard route must not shadow the challenge
    with challenges.published("dns-01", f"*.{ZONE}", "t1", "t1.thumb"), challenges.published("dns-01", ZONE, "t2", "t2.thumb"):
        reply = DNSRecord.parse(answer(query, zones, ("127.0.0.1",), challenge_txt=challenges.txt))
        values = sorted(str(rr.rdata).strip('"') for rr in reply.rr if rr.rtype == QTYPE.TXT)
        assert values == sorted([dns01_value("t1.thumb"), dns01_value("t2.thumb")])
    reply = DNSRecord.parse(answer(query, zones, ("127.0.0.1",), challenge_txt=challenges.txt))
    assert not [rr for rr in reply.rr if rr.rtype == QTYPE.TXT]  # withdrawn: back to the wildcard route's CNAME


def test_http_listener_answers_challenges_and_redirects_served_hosts():
    challenges = Challenges()
    with challenges.published("http-01", "h.example.org", "tok", "tok.thumb"):
        assert respond(challenges, "/.well-known/acme-challenge/tok", "h.example.org", 443, False) == (
            200, [("content-type", "application/octet-stream")], b"tok.thumb"
        )
    assert respond(challenges, "/.well-known/acme-challenge/tok", "h.example.org", 443, True)[0] == 404
    status, headers, _ = respond(challenges, "/a?b=1", "App.Example.org:80", 8443, True)
    assert status == 308 and ("location", "https://app.example.org:8443/a?b=1") in headers
    assert respond(challenges, "/a?b=1", "App.Example.org:80", 8443, False)[0] == 404
    assert respond(challenges, "/", "bad host/", 443, True)[0] == 400


async def test_tls_alpn_challenge_certificate(tmp_path, store):
    challenges = Challenges()
    store.challenge_context = challenges.tls_alpn_context
    context = store.server_context(["h2", "http/1.1"], acme_tls=True)
    with challenges.published("tls-alpn-01", f"alice.{ZONE}", "tok", "tok.thumb"):
        client_ctx = ssl.create_default_context()
        client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
        client_ctx.set_alpn_protocols([ACME_TLS_ALPN])
        client_transport, server_transport = trio.testing.memory_stream_pair()
        client = trio.SSLStream(client_transport, client_ctx, server_hostname=f"alice.{ZONE}")
        server = trio.SSLStream(server_transport, context, server_side=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)
        assert client.selected_alpn_protocol() == ACME_TLS_ALPN
        cert = x509.load_der_x509_certificate(client.getpeercert(binary_form=True))
        assert cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID).critical
    assert (await served(context, f"alice.{ZONE}"))[0] == [f"alice.{ZONE}"]


def client_for(handler) -> AcmeClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return AcmeClient(http, "https://ca.test/directory", ec.generate_private_key(ec.SECP256R1()), "ops@example.test")


async def test_acme_client_refuses_a_directory_that_is_not_acme():
    client = client_for(lambda request: httpx.Response(200, html="<html>hello</html>"))
    with pytest.raises(AcmeError, match="is not an ACME directory"):
        await client.directory()


async def test_acme_client_reports_timeouts_and_rate_limits():
    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(AcmeError, match="no answer from https://ca.test/directory"):
        await client_for(timeout).directory()

    def limited(request):
        if request.url.path == "/directory":
            return httpx.Response(200, json={"newNonce": "https://ca.test/nonce", "newAccount": "https://ca.test/acct", "newOrder": "https://ca.test/order"})
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Replay-Nonce": "n1"})
        return httpx.Response(
            429, headers={"Retry-After": "3600", "Content-Type": "application/problem+json"},
            json={"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many certificates"},
        )

    with pytest.raises(AcmeError, match="429 rateLimited: too many certificates") as info:
        await client_for(limited).account()
    assert info.value.retry_after == 3600


def test_expiry_gauge(store):
    metrics = EdgeMetrics()
    metrics.watch_certificates(lambda: store.infos)
    text = generate_latest(metrics.registry).decode()
    days = re.search(r'burrow_edge_certificate_expiry_days\{certificate="alice.example.test"\} ([0-9.]+)', text)
    alice = next(info for info in store.infos if info.stem == "alice.example.test")
    assert days and float(days.group(1)) > 0 and abs(float(days.group(1)) - alice.days_left()) < 0.01


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None, "https://ca.test/dir", None, None, False), "--acme-directory needs --acme-email"),
        ((None, None, "ops@example.test", None, False), "need --acme-directory"),
        ((None, "https://ca.test/dir", "ops@example.test", None, True), "choose --dev-ca or --acme-directory"),
        ((None, "ftp://ca.test", "ops@example.test", None, False), "invalid ACME directory"),
        ((None, "https://ca.test/dir", "not-an-address", None, False), "invalid e-mail address"),
    ],
)
def test_init_acme_settings_refusals(args, message):
    with pytest.raises(ConfigError, match=message):
        acme_settings(*args)


def test_cert_add_command(tmp_path):
    home = tmp_path / "edge"
    runner = CliRunner()
    init = ["init", "--home", home, "--zone", ZONE, "--public-ip", "127.0.0.1"]
    assert runner.invoke(app, [str(arg) for arg in init]).exit_code == 0
    ca = trustme.CA()
    now = datetime.datetime.now(datetime.timezone.utc)
    files = {
        "shop.pem": pair(ca, f"shop.{ZONE}")[0],
        "other.key": pair(ca, f"shop.{ZONE}")[1],
        "junk.pem": b"not a certificate\n",
    }
    files["old.pem"], files["old.key"] = pair(ca, f"old.{ZONE}", not_before=now - datetime.timedelta(days=10), not_after=now - datetime.timedelta(days=1))
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    cases = [
        ("shop.pem", "other.key", "other.key: this key does not match the certificate in"),
        ("old.pem", "old.key", "the certificate expired on"),
        ("junk.pem", "old.key", "junk.pem: not a PEM certificate file"),
        ("missing.pem", "old.key", "missing.pem: cannot read: No such file"),
    ]
    for cert, key, message in cases:
        result = runner.invoke(app, ["cert", "add", "--home", str(home), str(tmp_path / cert), str(tmp_path / key)])
        assert result.exit_code != 0, result.output
        assert f"error: {tmp_path}" in result.output and message in result.output and "Traceback" not in result.output
    assert not list((home / "certs").glob("*.pem"))  # nothing stored
    chain, key = pair(ca, f"shop.{ZONE}")
    (tmp_path / "good.pem").write_bytes(chain)
    (tmp_path / "good.key").write_bytes(key)
    added = runner.invoke(app, ["cert", "add", "--home", str(home), str(tmp_path / "good.pem"), str(tmp_path / "good.key")])
    assert added.exit_code == 0 and f"Added shop.{ZONE}: shop.{ZONE}; expires" in added.output
    assert (home / "certs" / f"shop.{ZONE}.key").stat().st_mode & 0o777 == 0o600
    assert (home / "certs" / f"shop.{ZONE}.pem").read_bytes() == chain
    again = runner.invoke(app, ["cert", "add", "--home", str(home), str(tmp_path / "good.pem"), str(tmp_path / "good.key")])
    assert again.exit_code != 0 and f"a certificate named shop.{ZONE} is stored already" in again.output


def test_edge_config_acme_keys(tmp_path):
    (tmp_path / "edge.yml").write_text(
        "zone: example.test\npublic-ip: 127.0.0.1\nhttp-listen: 127.0.0.1:8080\n"
        "acme-directory: https://ca.test/dir\nacme-email: ops@example.test\n"
        "acme-challenges:\n  WWW.Example.org: http-01\nacme-retry: 2m\n"
    )
    cfg = load_edge_config(tmp_path)
    assert cfg.http_listen == ("127.0.0.1", 8080) and cfg.acme_directory == "https://ca.test/dir"
    assert cfg.acme_challenges == {"www.example.org": "http-01"} and cfg.acme_retry == 120
    (tmp_path / "edge.yml").write_text("zone: example.test\npublic-ip: 127.0.0.1\nacme-challenges:\n  a.example.org: smtp-01\n")
    with pytest.raises(ConfigError, match="edge.yml.*a.example.org: unknown challenge 'smtp-01'"):
        load_edge_config(tmp_path)
    (tmp_path / "edge.yml").write_text("zone: example.test\npublic-ip: 127.0.0.1\nacme-retry: 0s\n")
    with pytest.raises(ConfigError, match="acme-retry: must be at least 1s"):
        load_edge_config(tmp_path)


def _fake_ca(order_answer):
    def handler(request):
        if request.url.path == "/directory":
            return httpx.Response(200, json={"newNonce": "https://ca.test/nonce", "newAccount": "https://ca.test/acct", "newOrder": "https://ca.test/order"})
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Replay-Nonce": "n"})
        if request.url.path == "/acct":
            return httpx.Response(201, json={"status": "valid"}, headers={"Location": "https://ca.test/acct/1", "Replay-Nonce": "n"})
        return order_answer()

    return handler


@pytest.mark.parametrize(
    ("order_answer", "reason", "at_least"),
    [
        (lambda: httpx.Response(201, json={"status": "pending"}, headers={"Replay-Nonce": "n"}), "not what RFC 8555 describes", 0),
        (
            lambda: httpx.Response(503, headers={"Retry-After": "900", "Replay-Nonce": "n"}, json={"type": "urn:ietf:params:acme:error:serverInternal", "detail": "down for maintenance"}),
            "creating the order: the CA answered 503 serverInternal: down for maintenance", 900,
        ),
    ],
)
async def test_manager_records_failures_and_keeps_running(tmp_path, order_answer, reason, at_least):
    cfg = EdgeConfig((ZONE,), ("127.0.0.1",), ("", 0), ("", 0), ("", 0), tmp_path, acme_directory="https://ca.test/directory", acme_email="ops@example.test", acme_retry=60)
    manager = AcmeManager(cfg, CertStore(cfg.certs_dir, (ZONE,)), Challenges(), random.Random(0))
    client = client_for(_fake_ca(order_answer))
    await manager.attempt(client, ZONE)
    entry = manager.entries[ZONE]
    assert entry.failures == 1 and reason in entry.last_failure
    wait = (entry.next_attempt - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert max(at_least, 60 * 0.8) - 5 <= wait <= max(at_least, 60 * 1.2)
    assert not cfg.certs_dir.exists() or not list(cfg.certs_dir.glob("*.pem"))
    save_state(tmp_path, manager.entries)
    assert load_state(tmp_path)[ZONE].last_failure == entry.last_failure  # what `cert status` shows
