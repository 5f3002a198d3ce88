"""Config files → validated frozen dataclasses.

`edge.yml` (edge), `config.yml` (cloudflared-style), `credentials.json` and
`cert.pem` (connector). Every error is one line naming the file and, where
known, the line or field.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import uuid
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared.crypto import b64decode, b64encode
from shared.errors import ConfigError
from shared.files import write_private

# ---------------------------------------------------------------------------
# Small value types

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str | int | float) -> float:
    """Seconds in a Go-style duration: "10s", "1m30s", "500ms", "2h"; a bare number is seconds."""
    if isinstance(text, bool):
        raise ConfigError(f"invalid duration {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ConfigError(f"invalid duration {text!r}: negative")
        return float(text)
    if not isinstance(text, str):
        raise ConfigError(f"invalid duration {text!r}")
    value = text.strip()
    if re.fullmatch(r"\d+", value):
        return float(value)
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not value or pos != len(value):
        raise ConfigError(f"invalid duration {text!r} (examples: 10s, 1m30s, 500ms)")
    return total


@dataclass(frozen=True, repr=False)
class Secret:
    """Secret bytes that never show up in logs or reprs."""

    value: bytes

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


def parse_hostport(text: str) -> tuple[str, int]:
    """ "127.0.0.1:0" → ("127.0.0.1", 0); "[::1]:443" → ("::1", 443); ":53" → ("", 53)."""
    if not isinstance(text, str):
        raise ConfigError(f"invalid address {text!r}: expected HOST:PORT")
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]*):(\d+)", text.strip())
    if not match:
        raise ConfigError(f"invalid address {text!r}: expected HOST:PORT")
    host = match.group(1) if match.group(1) is not None else match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ConfigError(f"invalid address {text!r}: port out of range")
    return host, port


def parse_listen_or_off(text: Any) -> tuple[str, int] | None:
    """HOST:PORT, or `off` (None: that listener is not opened). YAML's bare `off` reads as false."""
    if text is False or (isinstance(text, str) and text.strip().lower() == "off"):
        return None
    try:
        return parse_hostport(text)
    except ConfigError as exc:
        raise ConfigError(f"{exc} or off") from None


def format_hostport(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def is_dns_name(name: str) -> bool:
    """True for a lower-case ASCII hostname like "example.com" (no wildcard, no dot at the end)."""
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def burrow_home() -> Path:
    """The connector's home: $BURROW_HOME, or ~/.burrow."""
    return Path(os.environ.get("BURROW_HOME") or Path.home() / ".burrow").expanduser()


# ---------------------------------------------------------------------------
# YAML with line numbers


class _Mapping(dict):
    """A YAML mapping that remembers its own line and each key's line (1-based)."""

    line: int | None = None
    key_lines: dict[Any, int]


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings are `_Mapping`s and which refuses duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable) or key in mapping:
            problem = "unhashable key" if not isinstance(key, Hashable) else f"duplicate key {key!r}"
            raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def line_of(mapping: Any, key: str | None = None) -> int | None:
    """The 1-based line a mapping (or one of its keys) came from in YAML, if known."""
    if key is not None and key in getattr(mapping, "key_lines", {}):
        return mapping.key_lines[key]
    return getattr(mapping, "line", None)


def where(source: str, line: int | None) -> str:
    """ "config.yml line 7" or just "config.yml"."""
    return f"{source} line {line}" if line else source


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from exc


def _load_yaml(path: Path) -> dict:
    """The top-level mapping of a YAML file ({} when empty)."""
    text = _read_text(path)
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise ConfigError(f"{where(str(path), mark.line + 1 if mark else None)}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    if data is None:
        return _Mapping()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, not {type(data).__name__}")
    return data


def type_name(value: Any) -> str:
    """A YAML-ish name for a value's type, for error messages."""
    return "mapping" if isinstance(value, Mapping) else type(value).__name__


def _type_error(path: Path, data: Mapping, key: str, expected: str) -> ConfigError:
    got = type_name(data[key])
    return ConfigError(f"{where(str(path), line_of(data, key))}: {key} must be {expected}, not {got}")


# ---------------------------------------------------------------------------
# edge.yml

DEFAULT_HTTPS_LISTEN = ("", 443)
DEFAULT_TUNNEL_LISTEN = ("", 7844)
DEFAULT_DNS_LISTEN = ("", 53)
EDGE_CONFIG_NAME = "edge.yml"


@dataclass(frozen=True)
class EdgeConfig:
    """The edge's settings (`edge.yml` in its home). A host of "" means every address.

    `zones` and `public_ips` hold one or more entries; the first of each is the
    edge's primary zone and the address connectors dial.
    """

    zones: tuple[str, ...]
    public_ips: tuple[str, ...]
    https_listen: tuple[str, int]
    tunnel_listen: tuple[str, int]
    dns_listen: tuple[str, int] | None  # None: no DNS server (`dns-listen: off`)
    home: Path
    http_listen: tuple[str, int] | None = None  # plain HTTP: ACME HTTP-01 answers, else a redirect to HTTPS
    acme_directory: str | None = None  # an RFC 8555 directory URL: certificates from ACME
    acme_email: str | None = None
    acme_ca_file: Path | None = None  # trust this CA for the ACME server's own TLS certificate
    acme_challenges: dict[str, str] = field(default_factory=dict)  # hostname → http-01 | tls-alpn-01 | dns-01
    acme_retry: float = 300.0  # seconds before the first retry of a failed issuance; doubles up to 6 h
    http_redirect_exempt: tuple[str, ...] = ()  # hostnames / *.wildcards proxied on http-listen, not redirected
    user: str | None = None  # `serve` binds as root, then runs as this user (`--user`)

    @property
    def zone(self) -> str:
        return self.zones[0]

    @property
    def public_ip(self) -> str:
        return self.public_ips[0]

    @property
    def registry_path(self) -> Path:
        return self.home / "registry.db"

    @property
    def certs_dir(self) -> Path:
        return self.home / "certs"

    @property
    def ca_path(self) -> Path:
        return self.home / "ca.pem"


def validate_zone(zone: Any) -> str:
    """The zone in canonical form (lower case, no dot at the end), or ConfigError."""
    name = zone.strip().lower().rstrip(".") if isinstance(zone, str) else ""
    if not is_dns_name(name):
        raise ConfigError(f"invalid zone {zone!r}: expected a DNS name like example.com")
    return name


def validate_ip(text: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(text).strip()))
    except ValueError:
        raise ConfigError(f"invalid public-ip {text!r}: expected an IP address") from None


def _one_or_more(check):
    """A checker for a value that is one item or a non-empty list of them (no repeats)."""

    def parse(raw: Any) -> tuple:
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise ConfigError("expected at least one value")
        values = tuple(check(item) for item in items)
        if len(set(values)) != len(values):
            raise ConfigError("a value is listed twice")
        return values

    return parse


def _compact(values: tuple[str, ...]) -> str | list[str]:
    return values[0] if len(values) == 1 else list(values)


ACME_KEYS = ("http-listen", "acme-directory", "acme-email", "acme-ca-file", "acme-challenges", "acme-retry")
ACME_CHALLENGES = ("dns-01", "http-01", "tls-alpn-01")


def validate_acme_directory(raw: Any) -> str:
    url = str(raw).strip()
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError(f"invalid ACME directory {raw!r}: expected a URL like https://acme-v02.api.letsencrypt.org/directory")
    return url


def validate_email(raw: Any) -> str:
    email = str(raw).strip()
    if not re.fullmatch(r"[^@\s:]+@[^@\s:]+\.[^@\s:]+", email):
        raise ConfigError(f"invalid e-mail address {raw!r}")
    return email


def _acme_retry(raw: Any) -> float:
    seconds = parse_duration(raw)
    if seconds < 1:
        raise ConfigError("must be at least 1s (retrying faster would hammer the CA)")
    return seconds


def validate_acme_challenges(raw: Any) -> dict[str, str]:
    """{hostname: challenge type}: how ACME validates each extra name the edge gets a certificate for."""
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping of hostname: http-01 | tls-alpn-01 | dns-01")
    challenges = {}
    for name, kind in raw.items():
        host = str(name).strip().lower().rstrip(".")
        if not is_dns_name(host):
            raise ConfigError(f"invalid hostname {name!r}")
        if kind not in ACME_CHALLENGES:
            raise ConfigError(f"{host}: unknown challenge {kind!r}; expected one of {', '.join(ACME_CHALLENGES)}")
        challenges[host] = kind
    return challenges


def validate_redirect_exempt(raw: Any) -> tuple[str, ...]:
    """Hostnames (`app.example.com`) and one-label wildcards (`*.example.com`) whose plain-HTTP
    requests are proxied instead of redirected to HTTPS."""
    if not isinstance(raw, list):
        raise ConfigError("expected a list of hostnames or *.wildcards")
    names = []
    for item in raw:
        name = item.strip().lower().rstrip(".") if isinstance(item, str) else ""
        if not is_dns_name(name.removeprefix("*.")):
            raise ConfigError(f"invalid hostname {item!r}: expected a name like app.example.com or *.example.com")
        names.append(name)
    return tuple(dict.fromkeys(names))


def _user_name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError("expected a user name")
    return raw.strip()


def load_edge_config(home: Path) -> EdgeConfig:
    """Read and validate `home/edge.yml`."""
    home = Path(home)
    path = home / EDGE_CONFIG_NAME
    data = _load_yaml(path)
    known = {"zone", "public-ip", "https-listen", "tunnel-listen", "dns-listen", "user", *ACME_KEYS, "http-redirect-exempt"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where(str(path), line_of(data, key))}: unknown key {key!r}")
    for key in ("zone", "public-ip"):
        if key not in data:
            raise ConfigError(f"{path}: missing key {key!r}")

    def value(key: str, check, *default):
        if key not in data and default:
            return default[0]
        try:
            return check(data[key])
        except ConfigError as exc:
            raise ConfigError(f"{where(str(path), line_of(data, key))}: {key}: {exc}") from None

    cfg = EdgeConfig(
        zones=value("zone", _one_or_more(validate_zone)),
        public_ips=value("public-ip", _one_or_more(validate_ip)),
        https_listen=value("https-listen", parse_hostport, DEFAULT_HTTPS_LISTEN),
        tunnel_listen=value("tunnel-listen", parse_hostport, DEFAULT_TUNNEL_LISTEN),
        dns_listen=value("dns-listen", parse_listen_or_off, DEFAULT_DNS_LISTEN),
        home=home,
        http_listen=value("http-listen", parse_hostport, None),
        acme_directory=value("acme-directory", validate_acme_directory, None),
        acme_email=value("acme-email", validate_email, None),
        acme_ca_file=value("acme-ca-file", lambda raw: Path(str(raw)), None),
        acme_challenges=value("acme-challenges", validate_acme_challenges, {}),
        acme_retry=value("acme-retry", _acme_retry, 300.0),
        http_redirect_exempt=value("http-redirect-exempt", validate_redirect_exempt, ()),
        user=value("user", _user_name, None),
    )
    if cfg.http_redirect_exempt:
        here = f"{where(str(path), line_of(data, 'http-redirect-exempt'))}: http-redirect-exempt"
        if cfg.http_listen is None:
            raise ConfigError(f"{here}: needs http-listen (the plain-HTTP listener)")
        if apex := set(cfg.zones) & set(cfg.http_redirect_exempt):
            raise ConfigError(f"{here}: {min(apex)} is a zone apex, where the admin API is: it stays HTTPS-only")
    return cfg


def write_edge_config(cfg: EdgeConfig) -> None:
    """Write `cfg` to its `edge.yml` atomically (0600)."""
    data = {
        "zone": _compact(cfg.zones),
        "public-ip": _compact(cfg.public_ips),
        "https-listen": format_hostport(cfg.https_listen),
        "tunnel-listen": format_hostport(cfg.tunnel_listen),
        "dns-listen": format_hostport(cfg.dns_listen) if cfg.dns_listen else "off",
    }
    optional = {
        "http-listen": format_hostport(cfg.http_listen) if cfg.http_listen else None,
        "acme-directory": cfg.acme_directory,
        "acme-email": cfg.acme_email,
        "acme-ca-file": str(cfg.acme_ca_file) if cfg.acme_ca_file else None,
        "acme-challenges": dict(cfg.acme_challenges) or None,
        "http-redirect-exempt": list(cfg.http_redirect_exempt) or None,
        "user": cfg.user,
    }
    data.update({key: value for key, value in optional.items() if value is not None})
    write_private(cfg.home / EDGE_CONFIG_NAME, yaml.safe_dump(data, sort_keys=False))


# ---------------------------------------------------------------------------
# credentials.json


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
        data = json.loads(_read_text(path))
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


# ---------------------------------------------------------------------------
# cert.pem (account credential written by `tunnel login`)

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
    text = _read_text(path)
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


# ---------------------------------------------------------------------------
# config.yml (cloudflared-compatible)


MAX_HA_CONNECTIONS = 16


@dataclass(frozen=True)
class ConnectorConfig:
    """A connector's `config.yml`. `ingress` holds the raw rules (see `connector.ingress`);
    `extra` holds every other top-level key, for the caller to use or warn about."""

    tunnel: str | None = None
    credentials_file: Path | None = None
    ingress: tuple[dict, ...] = ()
    origin_request: dict = field(default_factory=dict)
    ha_connections: int | None = None
    extra: dict = field(default_factory=dict)


def load_connector_config(path: Path) -> ConnectorConfig:
    """Read a cloudflared-style `config.yml`. Ingress rules keep their YAML lines (see `line_of`)."""
    path = Path(path)
    data = _load_yaml(path)
    tunnel = data.get("tunnel")
    if tunnel is not None and not isinstance(tunnel, str):
        raise _type_error(path, data, "tunnel", "a tunnel name or UUID")
    credentials = data.get("credentials-file")
    if credentials is not None and not isinstance(credentials, str):
        raise _type_error(path, data, "credentials-file", "a path")
    ingress = data.get("ingress")
    if ingress is not None and not isinstance(ingress, list):
        raise _type_error(path, data, "ingress", "a list of rules")
    origin_request = data.get("originRequest")
    if origin_request is not None and not isinstance(origin_request, dict):
        raise _type_error(path, data, "originRequest", "a mapping")
    ha = data.get("ha-connections")
    if ha is not None and (not isinstance(ha, int) or isinstance(ha, bool) or not 1 <= ha <= MAX_HA_CONNECTIONS):
        line = line_of(data, "ha-connections")
        raise ConfigError(f"{where(str(path), line)}: ha-connections must be a whole number from 1 to {MAX_HA_CONNECTIONS}")
    known = {"tunnel", "credentials-file", "ingress", "originRequest", "ha-connections"}
    return ConnectorConfig(
        tunnel=tunnel,
        credentials_file=Path(credentials).expanduser() if credentials else None,
        ingress=tuple(ingress or ()),
        origin_request=origin_request or {},
        ha_connections=ha,
        extra={key: value for key, value in data.items() if key not in known},
    )
