"""`burrow tunnel --url`: ask an edge for a quick tunnel (no login) and the box that shows its URL."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from shared.credentials import Credentials, load_account_cert
from shared.crypto import b64decode
from shared.errors import AuthError, BurrowError, ConfigError, Unreachable
from shared.values import Secret, burrow_home

TIMEOUT_S = 10.0
QUICK_PATH = "/api/v1/quick-tunnels"


class QuickRefused(BurrowError):
    """The edge would not give a quick tunnel now (rate limit, full); trying later can help."""

    retryable = True


def edge_and_ca(edge_url: str | None, ca_file: Path | None) -> tuple[str, str | None]:
    """The edge URL and CA to use: the flags, else those of `burrow tunnel login` (cert.pem)."""
    ca_pem = None
    if ca_file is not None:
        try:
            ca_pem = ca_file.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {ca_file}: {exc.strerror}") from None
    if edge_url is None:
        cert_path = burrow_home() / "cert.pem"
        if not cert_path.exists():
            raise ConfigError("which edge? give --edge https://HOST:PORT (or run `burrow tunnel login` first)")
        cert = load_account_cert(cert_path)
        edge_url, ca_pem = cert.edge_url, ca_pem or cert.edge_ca
    if urlsplit(edge_url).scheme != "https" or not urlsplit(edge_url).hostname:
        raise ConfigError(f"--edge {edge_url!r} must be an https:// URL, e.g. https://203.0.113.10")
    return edge_url.rstrip("/"), ca_pem


def request_quick_tunnel(edge_url: str, ca_pem: str | None, bind_address: str | None = None) -> tuple[Credentials, str]:
    """(credentials of a new quick tunnel, its public URL); the request comes from `bind_address` if given."""
    verify = ssl.create_default_context(cadata=ca_pem) if ca_pem else True
    transport = httpx.HTTPTransport(verify=verify, local_address=bind_address)
    try:
        with httpx.Client(transport=transport, timeout=TIMEOUT_S) as client:
            response = client.post(edge_url + QUICK_PATH)
    except httpx.TransportError as exc:
        raise Unreachable(f"cannot reach the edge at {edge_url}: {str(exc) or type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    if response.status_code != 201:
        reason = body.get("error") or f"it answered {response.status_code} {response.reason_phrase}"
        kind = {403: AuthError, 404: ConfigError, 429: QuickRefused, 503: QuickRefused}.get(response.status_code, BurrowError)
        if response.status_code == 404:
            reason = f"{edge_url} is not a Burrow edge offering quick tunnels ({reason})"
        raise kind(f"the edge refused a quick tunnel: {reason}")
    try:
        creds = Credentials(
            account_tag="", tunnel_id=str(body["id"]), tunnel_name=str(body["hostname"]),
            tunnel_secret=Secret(b64decode(body["secret"])), endpoint=str(body["endpoint"]),
            edge_ca=ca_pem, edge_name=str(body["zone"]),
        )
        return creds, str(body["url"])
    except (KeyError, ValueError, TypeError):
        raise BurrowError(f"the edge at {edge_url} sent a malformed quick tunnel answer") from None


def url_box(url: str) -> str:
    """The URL framed so it stands out in a terminal full of log lines."""
    lines = ["Your quick tunnel has been created! Visit it at:", url]
    width = max(map(len, lines)) + 4
    rule = "+" + "-" * width + "+"
    return "\n".join([rule, *(f"|  {line.ljust(width - 4)}  |" for line in lines), rule])
