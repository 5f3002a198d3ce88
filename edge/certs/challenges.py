"""Pending ACME challenge answers, published while a CA validates and withdrawn after.

The DNS server reads `txt` (DNS-01), the plain-HTTP listener reads `http`
(HTTP-01), the HTTPS listener's SNI hook reads `tls_alpn_context` (TLS-ALPN-01).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

ACME_TLS_ALPN = "acme-tls/1"  # RFC 8737
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
HTTP01_PREFIX = "/.well-known/acme-challenge/"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def dns01_value(key_authorization: str) -> str:
    """The TXT value for `_acme-challenge.<name>` (RFC 8555 §8.4)."""
    return b64url(hashlib.sha256(key_authorization.encode()).digest())


class Challenges:
    """The answers the edge's listeners give while a challenge is pending."""

    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}  # `_acme-challenge.<name>` → values
        self.http: dict[str, str] = {}  # token → key authorization
        self._tls_alpn: dict[str, ssl.SSLContext] = {}  # hostname → context with the challenge certificate

    def tls_alpn_context(self, name: str) -> ssl.SSLContext | None:
        return self._tls_alpn.get(name)

    @contextmanager
    def published(self, kind: str, name: str, token: str, key_authorization: str) -> Iterator[None]:
        """Answer one challenge while the block runs."""
        if kind == "dns-01":
            owner = f"_acme-challenge.{name.removeprefix('*.')}"
            value = dns01_value(key_authorization)
            self.txt.setdefault(owner, []).append(value)
            try:
                yield
            finally:
                values = self.txt.get(owner, [])
                if value in values:
                    values.remove(value)
                if not values:
                    self.txt.pop(owner, None)
        elif kind == "http-01":
            self.http[token] = key_authorization
            try:
                yield
            finally:
                self.http.pop(token, None)
        elif kind == "tls-alpn-01":
            self._tls_alpn[name] = tls_alpn_context(name, key_authorization)
            try:
                yield
            finally:
                self._tls_alpn.pop(name, None)
        else:
            raise ValueError(f"unknown challenge type {kind}")


def tls_alpn_context(name: str, key_authorization: str) -> ssl.SSLContext:
    """A context offering only `acme-tls/1` with the RFC 8737 self-signed certificate for `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode()).digest()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x20" + digest), critical=True)
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ACME_TLS_ALPN])
    with TemporaryDirectory() as tmp:  # load_cert_chain reads files only
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        context.load_cert_chain(cert_file, key_file)
    return context
