"""Issue 21: Java's PKIX validation accepts the dev CA (`init --dev-ca`), through the real edge.

A trust store holding only `ca.pem` (keytool), a hosts file sending the zone's names to
loopback (`jdk.net.hosts.file`), and Java's HttpClient (`tests/e2e/java/DevCaClient.java`,
run as a single-file source program). No Go toolchain is assumed: Go's crypto/x509 is not tested here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import ZONE

CLIENT = Path(__file__).parent / "java" / "DevCaClient.java"
STORE_PASSWORD = "burrow-test"


pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("keytool") is None,
    reason="java/keytool not installed: Java's PKIX validation of the dev CA is not tested",
)


def test_java_client_trusts_the_dev_ca_by_name_and_by_address(stack, tmp_path):
    edge = stack.edge
    store, hosts = tmp_path / "trust.p12", tmp_path / "hosts"
    subprocess.run(
        ["keytool", "-importcert", "-noprompt", "-alias", "burrow-dev-ca", "-file", str(edge.ca),
         "-keystore", str(store), "-storetype", "PKCS12", "-storepass", STORE_PASSWORD],
        check=True, capture_output=True, timeout=60,
    )
    hosts.write_text(f"127.0.0.1 app.{ZONE}\n")
    result = subprocess.run(
        ["java", f"-Djavax.net.ssl.trustStore={store}", f"-Djavax.net.ssl.trustStorePassword={STORE_PASSWORD}",
         "-Djavax.net.ssl.trustStoreType=PKCS12", f"-Djdk.net.hosts.file={hosts}", str(CLIENT),
         f"https://app.{ZONE}:{edge.https_port}/from-java", f"https://127.0.0.1:{edge.https_port}/"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    by_name, by_address = result.stdout.splitlines()
    version, status, body = by_name.split(" ", 2)
    assert (version, status) == ("HTTP_2", "200") and json.loads(body)["target"] == "/from-java"
    assert by_address.startswith("HTTP_2 ")  # no SNI: the certificate's IP address, verified too
