"""Secrets: minting, hashing for storage, constant-time checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_BYTES = 32


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
