"""Certificates for the edge: the dev CA, and checking a certificate file before it is stored.

The store itself (`certs/NAME.pem` + `NAME.key`, chosen by SNI) is `edge.cert_store`.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.certs.store import leaf_names, write_pair
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


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, days: int) -> x509.CertificateBuilder:
    """A certificate valid from an hour ago (clock skew) for `days` days."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=signs_certificates,
        crl_sign=signs_certificates, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def create_dev_ca(home: Path, zones: Sequence[str], public_ips: Sequence[str]) -> None:
    """Make a private CA (`ca.pem`, `ca-key.pem`) and a certificate for the zones in `certs/`.

    The leaf covers each zone, *.zone, *.tunnels.zone, *.quick.zone (quick tunnels) and the public IPs. The CA is
    name-constrained to the zones (DNS names only), so trusting it cannot expose sites of
    other names. The first zone names the files.
    """
    home = Path(home)
    if (home / "ca-key.pem").exists():
        raise ConfigError(f"{home / 'ca-key.pem'} exists already; remove it to make a new dev CA")
    zone = zones[0]
    ips = [ipaddress.ip_address(ip) for ip in public_ips]

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        _builder(_name(f"Burrow dev CA for {zone}"), _name(f"Burrow dev CA for {zone}"), ca_key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(  # DNS names only: BoringSSL (grpcio) rejects a CA with any IP address constraint
            x509.NameConstraints(permitted_subtrees=[x509.DNSName(name) for name in zones], excluded_subtrees=None),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        _builder(_name(zone), ca_cert.subject, leaf_key, LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(name)
                    for zone_name in zones
                    for name in (zone_name, f"*.{zone_name}", f"*.tunnels.{zone_name}", f"*.quick.{zone_name}")
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
    write_pair(home / "certs", zone, leaf_cert.public_bytes(serialization.Encoding.PEM), _key_pem(leaf_key), "dev-ca")


@dataclass(frozen=True)
class CheckedPair:
    """A certificate chain and key that passed `check_pair`."""

    chain: tuple[x509.Certificate, ...]
    names: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def check_pair(cert_pem: bytes, key_pem: bytes, cert_label: str, key_label: str, *, check_trust: bool = True) -> CheckedPair:
    """Check a chain file and a key file before they are stored; ConfigError says what is wrong.

    Refused: not PEM, a key that does not match the leaf, an encrypted key, an expired
    leaf, a chain out of order (each certificate must be issued by the next one).
    Warned: a chain ending in a certificate this machine's trust store cannot complete.
    """
    try:
        chain = tuple(x509.load_pem_x509_certificates(cert_pem))
    except ValueError:
        raise ConfigError(f"{cert_label}: not a PEM certificate file (expected -----BEGIN CERTIFICATE-----)") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ConfigError(f"{key_label}: the key is encrypted; store it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{key_label}: not a PEM private key (expected -----BEGIN PRIVATE KEY-----)") from None
    leaf = chain[0]
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != leaf.public_key().public_bytes(*public):
        raise ConfigError(f"{key_label}: this key does not match the certificate in {cert_label}")
    now = datetime.datetime.now(datetime.timezone.utc)
    if leaf.not_valid_after_utc <= now:
        raise ConfigError(f"{cert_label}: the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    warnings = []
    if leaf.not_valid_before_utc > now:
        warnings.append(f"the certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    for position, (cert, issuer) in enumerate(zip(chain, chain[1:]), start=1):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise ConfigError(
                f"{cert_label}: certificate {position} ({cert.subject.rfc4514_string()}) is not issued by "
                f"certificate {position + 1} ({issuer.subject.rfc4514_string()}); order the file leaf first, then each issuer"
            ) from None
    last = chain[-1]
    if check_trust and last.issuer != last.subject and not _trusted_issuer(last):
        warnings.append(
            f"the chain ends with a certificate issued by {last.issuer.rfc4514_string()}, which this machine "
            "does not trust: clients need that CA (or add the intermediate certificates to the file)"
        )
    names, has_ip = leaf_names(leaf)
    if not names and not has_ip:
        raise ConfigError(f"{cert_label}: the certificate lists no DNS name (subject alternative name)")
    return CheckedPair(chain, names, tuple(warnings))


def _trusted_issuer(cert: x509.Certificate) -> bool:
    """Whether the system trust store holds a CA named as `cert`'s issuer."""
    context = ssl.create_default_context()
    issuer = cert.issuer.public_bytes()
    with warnings.catch_warnings():  # some system roots have serial numbers cryptography frowns upon
        warnings.simplefilter("ignore")
        return any(
            x509.load_der_x509_certificate(der).subject.public_bytes() == issuer
            for der in context.get_ca_certs(binary_form=True)
        )
