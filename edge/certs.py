"""Certificates for the edge's HTTPS listener: a dev CA, and a store picked by SNI.

The store is a directory of `NAME.pem` (certificate chain) + `NAME.key` pairs.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.errors import ConfigError
from shared.files import write_private

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest validity Apple platforms accept for a TLS server certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_public(path: Path, data: bytes) -> None:
    write_private(path, data)
    path.chmod(0o644)


def create_dev_ca(home: Path, zones: Sequence[str], public_ips: Sequence[str]) -> None:
    """Make a private CA (`ca.pem`, `ca-key.pem`) and a certificate for the zones in `certs/`.

    The leaf covers each zone, *.zone, *.tunnels.zone and the public IPs. The CA is
    name-constrained to the zones and the IPs, so trusting it in a browser cannot expose
    other sites. The first zone names the files.
    """
    home = Path(home)
    if (home / "ca-key.pem").exists():
        raise ConfigError(f"{home / 'ca-key.pem'} exists already; remove it to make a new dev CA")
    zone = zones[0]
    ips = [ipaddress.ip_address(ip) for ip in public_ips]
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(hours=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Burrow dev CA for {zone}"))
        .issuer_name(_name(f"Burrow dev CA for {zone}"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName(name) for name in zones]
                + [x509.IPAddress(ipaddress.ip_network(ip)) for ip in ips],
                excluded_subtrees=None,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(zone))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(name)
                    for zone_name in zones
                    for name in (zone_name, f"*.{zone_name}", f"*.tunnels.{zone_name}")
                ]
                + [x509.IPAddress(ip) for ip in ips]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    write_private(home / "ca-key.pem", _key_pem(ca_key))
    _write_public(home / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    write_private(home / "certs" / f"{zone}.key", _key_pem(leaf_key))
    _write_public(home / "certs" / f"{zone}.pem", leaf_cert.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class CertEntry:
    """One certificate file pair and the names its leaf covers."""

    cert_file: Path
    key_file: Path
    dns_names: tuple[str, ...]
    has_ip: bool


@dataclass(frozen=True)
class CertStore:
    """Every certificate in a directory; `server_context` serves the right one per SNI name."""

    entries: tuple[CertEntry, ...]

    @classmethod
    def load(cls, certs_dir: Path) -> CertStore:
        """Read every `NAME.pem` + `NAME.key` pair in `certs_dir` (checking that each pair matches)."""
        certs_dir = Path(certs_dir)
        cert_files = sorted(certs_dir.glob("*.pem")) if certs_dir.is_dir() else []
        if not cert_files:
            raise ConfigError(
                f"{certs_dir}: no certificates (NAME.pem + NAME.key); run `burrow-edge init --dev-ca`"
            )
        entries = []
        for cert_file in cert_files:
            key_file = cert_file.with_suffix(".key")
            if not key_file.exists():
                raise ConfigError(f"{cert_file}: its key {key_file.name} is missing")
            _server_context(cert_file, key_file, [])  # fails early on a bad or mismatched pair
            try:
                leaf = x509.load_pem_x509_certificate(cert_file.read_bytes())
                sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            except (ValueError, x509.ExtensionNotFound) as exc:
                raise ConfigError(f"{cert_file}: cannot read its subject alternative names: {exc}") from None
            dns_names = tuple(name.lower().rstrip(".") for name in sans.get_values_for_type(x509.DNSName))
            has_ip = bool(sans.get_values_for_type(x509.IPAddress))
            entries.append(CertEntry(cert_file, key_file, dns_names, has_ip))
        return cls(tuple(entries))

    def names(self) -> list[str]:
        """Every DNS name (and wildcard) some certificate covers."""
        return sorted({name for entry in self.entries for name in entry.dns_names})

    def server_context(self, alpn: list[str]) -> ssl.SSLContext:
        """A TLS ≥ 1.2 server context choosing the certificate by SNI: exact name, then a
        one-label wildcard. No SNI (e.g. a connection by IP) or no match → the default
        certificate: the first one covering an IP address, else the first file."""
        contexts = [_server_context(entry.cert_file, entry.key_file, alpn) for entry in self.entries]
        by_name: dict[str, ssl.SSLContext] = {}
        for entry, context in zip(self.entries, contexts):
            for name in entry.dns_names:
                by_name.setdefault(name, context)
        default = next((c for e, c in zip(self.entries, contexts) if e.has_ip), contexts[0])

        def choose(sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            if not server_name:
                return
            name = server_name.lower().rstrip(".")
            parent = name.split(".", 1)[1] if "." in name else ""
            context = by_name.get(name) or by_name.get(f"*.{parent}")
            if context is not None and context is not default:
                sock.context = context

        default.sni_callback = choose
        return default


def _server_context(cert_file: Path, key_file: Path, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise ConfigError(f"{key_file}: does not match the certificate in {cert_file.name}") from None
        raise ConfigError(f"{cert_file}: cannot load certificate and key: {exc.reason or exc}") from None
    except OSError as exc:
        raise ConfigError(f"{cert_file}: cannot read: {exc.strerror or exc}") from None
    if alpn:
        context.set_alpn_protocols(alpn)
    return context
