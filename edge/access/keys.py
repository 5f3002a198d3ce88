"""The edge's Access signing key: ES256 JWTs (`Burrow-Access-Jwt-Assertion`) and their JWKS.

The private key lives in the edge home (`access-key.pem`, 0600), made on first
use. Its public half is published in the registry, so every edge sharing the
registry serves every edge's key in its JWKS; each edge marks its key as in use
every `KEY_PUBLISH_INTERVAL`, and a key left unmarked for `KEY_RETIRE_AFTER`
(a rotated or retired one) drops out of the JWKS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from shared.files import write_private

log = logging.getLogger(__name__)

KEY_FILE = "access-key.pem"
JWT_LIFETIME = 300  # seconds an assertion is valid: long enough for one request, short if leaked
ALGORITHM = "ES256"
KEY_PUBLISH_INTERVAL = 60.0  # seconds between an edge's "my key is in use" marks in the registry
KEY_RETIRE_AFTER = 900.0  # a key not marked for this long leaves the JWKS (its JWTs expired long before)


class Signer:
    """Signs Access assertions with one P-256 key."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str) -> None:
        self._key = key
        self.issuer = issuer
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public_der).hexdigest()[:16]

    @classmethod
    def load_or_create(cls, home: Path, issuer: str) -> Signer:
        path = Path(home) / KEY_FILE
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path} does not hold an EC private key")
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            write_private(path, pem)
            log.info("access.key_created path=%s", path)
        return cls(key, issuer)

    def derive(self, label: bytes) -> bytes:
        """A 32-byte secret for `label` (e.g. the session cookie MAC key), stable while this key is."""
        number = self._key.private_numbers().private_value.to_bytes(32, "big")
        return hmac.new(number, label, hashlib.sha256).digest()

    def public_jwk(self) -> dict:
        jwk = json.loads(ECAlgorithm.to_jwk(self._key.public_key()))
        return jwk | {"kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def assertion(self, hostname: str, subject: str, *, email: str = "", now: float | None = None) -> str:
        """A JWT for one request to `hostname` on behalf of `subject` (a token name or an email)."""
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.issuer,
            "aud": [hostname],
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": issued + JWT_LIFETIME,
            "type": "app",
        }
        if email:
            claims["email"] = email
        else:
            claims["common_name"] = subject
        return self.sign(claims)

    def sign(self, claims: dict) -> str:
        """`claims` as a JWT signed with this key (its `kid` in the header)."""
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})
