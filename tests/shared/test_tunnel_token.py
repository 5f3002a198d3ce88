"""Tunnel tokens round-trip and bad tokens get one clear error."""

from __future__ import annotations

import base64
import json

import pytest

from shared.credentials import Credentials
from shared.crypto import mint_secret
from shared.errors import ConfigError
from shared.tunnel_token import decode_token, encode_token
from shared.values import Secret

TUNNEL = "6ff42ae2-765d-4adf-8112-31c55c1551ef"


def b64json(data) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


@pytest.mark.parametrize("ca", [None, "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"], ids=["system-ca", "pinned-ca"])
def test_round_trip(ca) -> None:
    creds = Credentials("acct", TUNNEL, "web", Secret(mint_secret()), "203.0.113.10:7844", ca, "example.com")
    token = encode_token(creds)
    assert set(json.loads(base64.b64decode(token))) == {"a", "t", "s", "e", "c", "n"}
    back = decode_token(token)
    assert back.tunnel_secret.value == creds.tunnel_secret.value
    assert (back.account_tag, back.tunnel_id, back.endpoint, back.edge_ca) == ("acct", TUNNEL, creds.endpoint, ca)
    assert back.edge_name == "example.com"


GOOD = {"a": "acct", "t": TUNNEL, "s": base64.b64encode(b"k" * 32).decode(), "e": "127.0.0.1:7844", "c": None}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("!!!", "not base64 of a JSON object"),
        (base64.b64encode(b"[1]").decode(), "not base64 of a JSON object"),
        (b64json({**GOOD, "t": None}), "field 't' is missing"),
        (b64json({**GOOD, "t": "nope"}), "not a UUID"),
        (b64json({**GOOD, "s": "%%"}), "field 's' is not base64"),
        (b64json({**GOOD, "s": "c2hvcnQ="}), "32 bytes"),
        (b64json({**GOOD, "e": "no-port"}), "field 'e'"),
        (b64json({**GOOD, "c": 5}), "field 'c'"),
    ],
    ids=["not-b64", "not-object", "no-tunnel", "bad-uuid", "bad-secret", "short-secret", "bad-endpoint", "bad-ca"],
)
def test_bad_tokens(token: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        decode_token(token)
    assert str(info.value).startswith("invalid tunnel token")
