"""The TLS settings every edge context shares: TLS 1.2 or newer, modern suites only."""

from __future__ import annotations

import ssl

# TLS 1.2 suites: forward-secret key exchange and AEAD only (TLS 1.3 suites are all such).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def apply_tls_policy(context: ssl.SSLContext) -> ssl.SSLContext:
    """TLS 1.2 or newer, modern suites, the server's preference, no compression or renegotiation."""
    context.minimum_version = max(context.minimum_version, ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context
