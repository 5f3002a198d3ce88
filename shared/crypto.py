"""Secrets (minting, hashing for storage, constant-time checks) and tunnel TLS contexts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import ssl

SECRET_BYTES = 32
TUNNEL_ALPN = "burrow-tunnel/1"


def mint_secret() -> bytes:
    """A new random tunnel secret."""
    return secrets.token_bytes(SECRET_BYTES)


def mint_token() -> str:
    """A new random API token, printable and URL-safe."""
    return "brw_" + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: bytes | str) -> str:
    """The stored form of a high-entropy secret or token (hex SHA-256).

    Secrets are 256-bit random values, so a plain hash is as strong as a slow
    KDF here; the edge never stores the secret itself.
    """
    if isinstance(secret, str):
        secret = secret.encode()
    return hashlib.sha256(secret).hexdigest()


def verify_secret(secret: bytes | str, stored_hash: str) -> bool:
    """True when `secret` hashes to `stored_hash` (constant time)."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def tunnel_client_context(ca_pem: str | None) -> ssl.SSLContext:
    """The connector's context for dialing the edge: TLS 1.3, hostname checked.

    With `ca_pem` only that CA is trusted (pinned); otherwise the system store.
    """
    context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols([TUNNEL_ALPN])
    return context


def tunnel_server_context(cert_file: str | os.PathLike, key_file: str | os.PathLike) -> ssl.SSLContext:
    """The edge's context for the tunnel listener: TLS 1.3 only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols([TUNNEL_ALPN])
    return context
