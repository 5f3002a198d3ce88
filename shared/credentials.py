"""The connector's credential files: a tunnel's `credentials.json` and the account's
`cert.pem` written by `tunnel login`; read strictly, written atomically with mode 0600."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.crypto import b64decode, b64encode
from shared.errors import ConfigError
from shared.files import write_private
from shared.values import Secret, parse_hostport
from shared.yaml_lines import read_text


@dataclass(frozen=True)
class Credentials:
    """What `tunnel run` needs: the tunnel's id and secret and where the edge is."""

    account_tag: str
    tunnel_id: str
    tunnel_name: str
    tunnel_secret: Secret
    endpoint: str
    edge_ca: str | None = None
    edge_name: str | None = None  # the name the edge's certificate carries (its zone); else the endpoint host

    @property
    def edge_server_name(self) -> str:
        """The name to verify the edge's certificate against."""
        return self.edge_name or parse_hostport(self.endpoint)[0]


def _json_object(path: Path) -> dict:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} line {exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _string(path: Path, data: Mapping, key: str, *, required: bool = True) -> str | None:
    if key not in data or data[key] is None:
        if required:
            raise ConfigError(f"{path}: missing key {key!r}")
        return None
    if not isinstance(data[key], str):
        raise ConfigError(f"{path}: {key} must be a string")
    return data[key]


def load_credentials(path: Path) -> Credentials:
    """Read a tunnel's `credentials.json`."""
    data = _json_object(path)
    tunnel_id = _string(path, data, "TunnelID")
    try:
        tunnel_id = str(uuid.UUID(tunnel_id))
    except ValueError:
        raise ConfigError(f"{path}: TunnelID {tunnel_id!r} is not a UUID") from None
    try:
        secret = b64decode(_string(path, data, "TunnelSecret"))
    except ValueError:
        raise ConfigError(f"{path}: TunnelSecret is not valid base64") from None
    endpoint = _string(path, data, "Endpoint")
    try:
        parse_hostport(endpoint)
    except ConfigError as exc:
        raise ConfigError(f"{path}: Endpoint: {exc}") from None
    return Credentials(
        account_tag=_string(path, data, "AccountTag"),
        tunnel_id=tunnel_id,
        tunnel_name=_string(path, data, "TunnelName", required=False) or "",
        tunnel_secret=Secret(secret),
        endpoint=endpoint,
        edge_ca=_string(path, data, "EdgeCA", required=False),
        edge_name=_string(path, data, "EdgeName", required=False),
    )


def save_credentials(path: Path, creds: Credentials) -> None:
    """Write `credentials.json` atomically, mode 0600."""
    data = {
        "AccountTag": creds.account_tag,
        "TunnelID": creds.tunnel_id,
        "TunnelName": creds.tunnel_name,
        "TunnelSecret": b64encode(creds.tunnel_secret.value),
        "Endpoint": creds.endpoint,
    }
    if creds.edge_ca:
        data["EdgeCA"] = creds.edge_ca
    if creds.edge_name:
        data["EdgeName"] = creds.edge_name
    write_private(path, json.dumps(data, indent=2) + "\n")


_TOKEN_BEGIN = "-----BEGIN BURROW ACCOUNT TOKEN-----"
_TOKEN_END = "-----END BURROW ACCOUNT TOKEN-----"


@dataclass(frozen=True)
class AccountCert:
    """The account credential used for management commands (never for `tunnel run`)."""

    edge_url: str
    account_id: str
    api_token: Secret
    edge_ca: str | None = None


def load_account_cert(path: Path) -> AccountCert:
    """Read `cert.pem`: the edge CA (if private) then the account token block."""
    if not Path(path).exists():
        raise ConfigError(f"not logged in: {path} is missing; run `burrow tunnel login`")
    text = read_text(path)
    begin, end = text.find(_TOKEN_BEGIN), text.find(_TOKEN_END)
    if begin == -1 or end < begin:
        raise ConfigError(f"{path}: no {_TOKEN_BEGIN} block; run `burrow tunnel login` again")
    body = "".join(text[begin + len(_TOKEN_BEGIN) : end].split())
    try:
        data = json.loads(b64decode(body))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the account token block is damaged; run `burrow tunnel login` again")
    ca = text[:begin].strip()
    return AccountCert(
        edge_url=_string(path, data, "edge_url"),
        account_id=_string(path, data, "account_id"),
        api_token=Secret(_string(path, data, "api_token").encode()),
        edge_ca=ca + "\n" if ca else None,
    )


def save_account_cert(path: Path, cert: AccountCert) -> None:
    """Write `cert.pem` atomically, mode 0600."""
    token = json.dumps(
        {"edge_url": cert.edge_url, "account_id": cert.account_id, "api_token": cert.api_token.value.decode()}
    )
    body = b64encode(token.encode())
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    ca = cert.edge_ca.strip() + "\n" if cert.edge_ca else ""
    write_private(path, ca + "\n".join([_TOKEN_BEGIN, *lines, _TOKEN_END]) + "\n")
