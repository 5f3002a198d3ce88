"""Tunnel tokens: a tunnel's credentials in one string, for `burrow tunnel run --token`.

The token is base64 of compact JSON `{"a": account tag, "t": tunnel id,
"s": secret (base64), "e": endpoint, "c": edge CA PEM or null, "n": edge name or
null}` — cloudflared's shape plus the endpoint, CA and certificate name, so a token
alone is enough to run.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid

from shared.credentials import Credentials
from shared.crypto import SECRET_BYTES, b64decode, b64encode
from shared.errors import ConfigError
from shared.values import Secret, parse_hostport


def encode_token(creds: Credentials) -> str:
    data = {
        "a": creds.account_tag,
        "t": creds.tunnel_id,
        "s": b64encode(creds.tunnel_secret.value),
        "e": creds.endpoint,
        "c": creds.edge_ca,
        "n": creds.edge_name,
    }
    return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode("ascii")


def decode_token(token: str) -> Credentials:
    """The credentials in `token`; ConfigError naming what is wrong, never the secret."""
    try:
        data = json.loads(base64.b64decode("".join(token.split()), validate=True))
    except (binascii.Error, ValueError):
        raise ConfigError("invalid tunnel token: not base64 of a JSON object") from None
    if not isinstance(data, dict):
        raise ConfigError("invalid tunnel token: not base64 of a JSON object")
    for key in ("a", "t", "s", "e"):
        if not isinstance(data.get(key), str):
            raise ConfigError(f"invalid tunnel token: field '{key}' is missing")
    ca, name = data.get("c"), data.get("n")
    if ca is not None and not isinstance(ca, str):
        raise ConfigError("invalid tunnel token: field 'c' must be a PEM string or null")
    if name is not None and not isinstance(name, str):
        raise ConfigError("invalid tunnel token: field 'n' must be a name or null")
    try:
        tunnel_id = str(uuid.UUID(data["t"]))
    except ValueError:
        raise ConfigError("invalid tunnel token: field 't' is not a UUID") from None
    try:
        secret = b64decode(data["s"])
    except ValueError:
        raise ConfigError("invalid tunnel token: field 's' is not base64") from None
    if len(secret) != SECRET_BYTES:
        raise ConfigError(f"invalid tunnel token: the secret must be {SECRET_BYTES} bytes")
    try:
        parse_hostport(data["e"])
    except ConfigError as exc:
        raise ConfigError(f"invalid tunnel token: field 'e': {exc}") from None
    return Credentials(data["a"], tunnel_id, "", Secret(secret), data["e"], ca or None, name or None)
