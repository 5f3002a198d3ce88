import datetime
import ipaddress
import ssl
import stat

import pytest
import trio
import trio.testing
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.certs.files import create_dev_ca
from edge.certs.store import CertStore
from shared.crypto import TUNNEL_ALPN, tunnel_client_context, tunnel_server_context
from shared.errors import ConfigError

ZONE = "example.com"
PUBLIC_IP = "203.0.113.10"


@pytest.fixture
def home(tmp_path):
    create_dev_ca(tmp_path, [ZONE], [PUBLIC_IP])
    return tmp_path


async def handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str
) -> tuple[x509.Certificate, str | None]:
    """A real TLS handshake over memory streams: the server's certificate and the ALPN protocol."""
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = trio.SSLStream(client_transport, client_ctx, server_hostname=server_hostname)
    server = trio.SSLStream(server_transport, server_ctx, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    assert client.selected_alpn_protocol() == server.selected_alpn_protocol()
    return x509.load_der_x509_certificate(client.getpeercert(binary_form=True)), client.selected_alpn_protocol()


def client_context(ca_pem: str, alpn: str = "h2") -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem)
    context.set_alpn_protocols([alpn])
    return context


def test_create_dev_ca_files(home):
    modes = {
        "ca.pem": 0o644,
        "ca-key.pem": 0o600,
        f"certs/{ZONE}.pem": 0o644,
        f"certs/{ZONE}.key": 0o600,
    }
    for name, expected in modes.items():
        assert stat.S_IMODE((home / name).stat().st_mode) == expected, name
    ca = x509.load_pem_x509_certificate((home / "ca.pem").read_bytes())
    assert ca.subject.rfc4514_string() == f"CN=Burrow dev CA for {ZONE}"
    store = CertStore.load(home / "certs")
    assert store.names() == sorted([ZONE, f"*.{ZONE}", f"*.tunnels.{ZONE}", f"*.quick.{ZONE}"])


def test_create_dev_ca_refuses_to_replace_the_ca(home):
    with pytest.raises(ConfigError, match="exists already"):
        create_dev_ca(home, [ZONE], [PUBLIC_IP])


VERIFIED_NAMES = [
    ("wildcard", f"app.{ZONE}"),
    ("apex", ZONE),
    ("tunnel-wildcard", f"6ff42ae2-765d-4adf-8112-31c55c1551ef.tunnels.{ZONE}"),
    ("ip-without-sni", PUBLIC_IP),
]


@pytest.mark.parametrize("server_hostname", [n[1] for n in VERIFIED_NAMES], ids=[n[0] for n in VERIFIED_NAMES])
async def test_dev_ca_verifies(home, server_hostname):
    store = CertStore.load(home / "certs")
    cert, alpn = await handshake(
        store.server_context(["h2", "http/1.1"]), client_context((home / "ca.pem").read_text()), server_hostname
    )
    assert alpn == "h2"
    assert cert.subject.rfc4514_string() == f"CN={ZONE}"


@pytest.mark.parametrize("server_hostname", ["a.b.example.com", "example.org"], ids=["two-labels-deep", "other-zone"])
async def test_dev_ca_rejects_names_it_does_not_cover(home, server_hostname):
    store = CertStore.load(home / "certs")
    with pytest.raises(ExceptionGroup) as info:
        await handshake(store.server_context(["h2"]), client_context((home / "ca.pem").read_text()), server_hostname)
    assert info.group_contains(trio.BrokenResourceError)


def test_dev_ca_constrains_dns_names_only(home):
    """BoringSSL (grpcio) refuses a CA with an IP address constraint: the zones alone are constrained."""
    ca = x509.load_pem_x509_certificate((home / "ca.pem").read_bytes())
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [x509.DNSName(ZONE)]
    assert constraints.value.excluded_subtrees is None


def issue_with_dev_ca(home, names: list[x509.GeneralName]) -> ssl.SSLContext:
    """A server context whose certificate the dev CA's key signs for `names`, whatever they are."""
    ca_key = serialization.load_pem_private_key((home / "ca-key.pem").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((home / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (home / "leaf.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (home / "leaf.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(home / "leaf.pem", home / "leaf.key")
    return context


async def test_dev_ca_key_cannot_vouch_for_a_name_outside_the_zone(home):
    server_ctx = issue_with_dev_ca(home, [x509.DNSName("example.org")])
    with pytest.raises(ExceptionGroup) as info:
        await handshake(server_ctx, client_context((home / "ca.pem").read_text()), "example.org")
    refused = info.value.subgroup(lambda exc: isinstance(exc.__cause__, ssl.SSLCertVerificationError))
    assert refused is not None and "permitted subtree violation" in str(refused.exceptions[0].__cause__)


async def test_dev_ca_key_can_vouch_for_any_ip_address(home):
    """The trade-off of the DNS-only constraint (docs/certificates.md): IP addresses are not constrained."""
    server_ctx = issue_with_dev_ca(home, [x509.IPAddress(ipaddress.ip_address("192.0.2.99"))])
    await handshake(server_ctx, client_context((home / "ca.pem").read_text(), "http/1.1"), "192.0.2.99")


@pytest.fixture
def two_certs(home):
    """The dev cert plus a trustme cert for other.test, in a file that sorts first."""
    other_ca = trustme.CA()
    leaf = other_ca.issue_cert("other.test", "*.other.test")
    leaf.private_key_pem.write_to_path(str(home / "certs" / "aaa-other.key"))
    leaf.cert_chain_pems[0].write_to_path(str(home / "certs" / "aaa-other.pem"))
    return home, other_ca


SNI_CASES = [
    ("dev-exact", ZONE, "dev"),
    ("dev-wildcard", f"www.{ZONE}", "dev"),
    ("other-exact", "other.test", "other"),
    ("other-wildcard", "x.other.test", "other"),
    ("ip-gets-cert-with-ip", PUBLIC_IP, "dev"),
]


@pytest.mark.parametrize(("server_hostname", "which"), [c[1:] for c in SNI_CASES], ids=[c[0] for c in SNI_CASES])
async def test_sni_selects_certificate(two_certs, server_hostname, which):
    home, other_ca = two_certs
    store = CertStore.load(home / "certs")
    assert "other.test" in store.names() and ZONE in store.names()
    if which == "dev":
        client_ctx = client_context((home / "ca.pem").read_text())
        expected = f"CN={ZONE}"
    else:
        client_ctx = ssl.create_default_context()
        other_ca.configure_trust(client_ctx)
        client_ctx.set_alpn_protocols(["h2"])
        expected = None
    cert, alpn = await handshake(store.server_context(["h2", "http/1.1"]), client_ctx, server_hostname)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert ("other.test" in names) == (which == "other")
    assert alpn == "h2"  # ALPN still works after the SNI callback switched contexts
    if expected:
        assert cert.subject.rfc4514_string() == expected


def test_store_errors(home, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(ConfigError, match="no usable certificate"):
        CertStore.load(empty)
    other = trustme.CA().issue_cert("other.test")
    other.private_key_pem.write_to_path(str(home / "certs" / f"{ZONE}.key"))
    with pytest.raises(ConfigError, match="does not match"):
        CertStore.load(home / "certs")
    (home / "certs" / f"{ZONE}.key").unlink()
    with pytest.raises(ConfigError, match="is missing"):
        CertStore.load(home / "certs")


async def test_tunnel_contexts(home):
    server_ctx = tunnel_server_context(home / "certs" / f"{ZONE}.pem", home / "certs" / f"{ZONE}.key")
    client_ctx = tunnel_client_context((home / "ca.pem").read_text())
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = trio.SSLStream(client_transport, client_ctx, server_hostname=f"x.tunnels.{ZONE}")
    server = trio.SSLStream(server_transport, server_ctx, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    assert client.selected_alpn_protocol() == TUNNEL_ALPN
    assert client.version() == "TLSv1.3"


def test_tunnel_client_context_defaults():
    context = tunnel_client_context(None)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
