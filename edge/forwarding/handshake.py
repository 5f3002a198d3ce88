"""The opening of an edge-to-edge forwarding connection (sans-IO).

The sending edge dials the receiving edge's tunnel listener with ALPN `PEER_ALPN`, checks its
certificate as connectors do, and sends one hello line carrying a token: an ES256 JWT signed with
its Access key (edge/access/keys.py), whose public half every edge publishes in the registry
(`access_keys`). The token names the receiving edge's run id as audience (good at that edge only)
and lives `TOKEN_LIFETIME` seconds. The receiver answers `ok` and the connection becomes a tunnel
session on which the sender opens one stream per forwarded request; anything else is refused and
closed before a single stream is read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import jwt
from jwt.algorithms import ECAlgorithm

from edge.access.keys import ALGORITHM, Signer
from shared.errors import AuthError, ProtocolError

HELLO = b"burrow-edge-peer/1 "
MAX_HELLO = 2048  # bytes of the hello line, token included
ACCEPTED, REFUSED = b"ok\n", b"no\n"
ISSUER = "burrow-edge-forwarding"  # never an Access assertion's issuer (the zone's URL)
TOKEN_LIFETIME = 60  # seconds a token opens connections; an open connection lives on
CLOCK_LEEWAY = 5  # seconds of clock difference between edges tolerated


def peer_token(signer: Signer, sender: str, receiver_run_id: str, now: float | None = None) -> str:
    """The token edge `sender` presents to the edge run `receiver_run_id`."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": ISSUER, "sub": sender, "aud": receiver_run_id, "iat": issued, "nbf": issued, "exp": issued + TOKEN_LIFETIME}
    return signer.sign(claims)


def hello(token: str) -> bytes:
    return HELLO + token.encode("ascii") + b"\n"


def token_kid(token: str) -> str:
    """The `kid` a token names (unverified: only to pick the key); AuthError if it names none."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise AuthError(f"malformed edge token: {exc}") from None
    if not isinstance(kid, str) or not kid:
        raise AuthError("edge token names no key")
    return kid


def verify_token(token: str, keys: Mapping[str, dict], run_id: str) -> str:
    """The sending edge's name, if `token` is signed by one of `keys` (kid → public JWK, the
    registry's) for this edge run `run_id` and still valid; else AuthError."""
    jwk = keys.get(token_kid(token))
    if jwk is None:
        raise AuthError("edge token signed by a key the registry does not hold")
    try:
        claims = jwt.decode(
            token, ECAlgorithm.from_jwk(jwk), algorithms=[ALGORITHM], audience=run_id, issuer=ISSUER, leeway=CLOCK_LEEWAY,
            options={"require": ["exp", "iat", "sub", "aud", "iss"], "verify_iat": False},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"edge token refused: {exc}") from None
    return str(claims["sub"])


class HelloReader:
    """Bytes in; the hello's token (and the bytes after it) once the line is complete."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[str | None, bytes]:
        self._buffer += data
        line, found, rest = self._buffer.partition(b"\n")
        if not found:
            if len(self._buffer) > MAX_HELLO:
                raise ProtocolError("edge hello too long")
            return None, b""
        if len(line) > MAX_HELLO or not line.startswith(HELLO) or not line[len(HELLO):].isascii():
            raise ProtocolError("not an edge hello")
        return line[len(HELLO):].decode("ascii"), rest
