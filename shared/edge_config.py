"""`edge.yml`: the edge's settings (zones, addresses, listeners, ACME), validated into a
frozen `EdgeConfig`, and written back by `burrow-edge init`."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from shared.errors import ConfigError
from shared.files import write_private
from shared.values import format_hostport, is_dns_name, parse_duration, parse_hostport, parse_listen_or_off
from shared.yaml_lines import line_of, load_yaml, where

DEFAULT_HTTPS_LISTEN = ("", 443)
DEFAULT_TUNNEL_LISTEN = ("", 7844)
DEFAULT_DNS_LISTEN = ("", 53)
EDGE_CONFIG_NAME = "edge.yml"
DATABASE_URL_ENV = "BURROW_DATABASE_URL"
EDGE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class PortRange:
    """Public ports `low`..`high` (both included) that tunnels may reserve."""

    low: int
    high: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


def parse_port_range(raw: Any) -> PortRange:
    """`LO-HI` (or one port) → PortRange, or ConfigError."""
    text = str(raw).strip()
    match = re.fullmatch(r"([0-9]{1,5})(?:-([0-9]{1,5}))?", text)
    if match is None:
        raise ConfigError(f"invalid port range {raw!r}: expected LO-HI, e.g. 20000-20099")
    low, high = int(match[1]), int(match[2] or match[1])
    if not 1 <= low <= high <= 65535:
        raise ConfigError(f"invalid port range {raw!r}: ports 1-65535, the first not above the last")
    return PortRange(low, high)


def check_port_ranges(cfg: EdgeConfig) -> None:
    """The public port ranges must not hold the edge's own listeners: HTTPS, tunnels, HTTP and DNS
    (TCP), DNS (UDP)."""
    tcp = {"https-listen": cfg.https_listen, "tunnel-listen": cfg.tunnel_listen, "http-listen": cfg.http_listen}
    own = (("tcp-ports", cfg.tcp_ports, {**tcp, "dns-listen": cfg.dns_listen}), ("udp-ports", cfg.udp_ports, {"dns-listen": cfg.dns_listen}))
    for flag, ports, listeners in own:
        for key, address in listeners.items():
            if ports is not None and address is not None and address[1] in ports:
                raise ConfigError(f"{flag} {ports} holds port {address[1]} of {key}")


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
    tcp_ports: PortRange | None = None  # public TCP ports tunnels may reserve (`--tcp-ports LO-HI`); None: none
    udp_ports: PortRange | None = None  # public UDP ports likewise (`--udp-ports LO-HI`)
    database: str | None = None  # a postgresql:// URL: the registry shared by several edges; else SQLite in `home`
    edge_name: str | None = None  # this edge among several (`burrow-edge edges list`); default: the host name

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
    def registry(self) -> str | Path:
        """Where the registry is: `BURROW_DATABASE_URL`, else the `database` URL, else SQLite in the home."""
        return os.environ.get(DATABASE_URL_ENV) or self.database or self.registry_path

    @property
    def name(self) -> str:
        return self.edge_name or default_edge_name()

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


def validate_edge_name(raw: Any) -> str:
    name = raw.strip() if isinstance(raw, str) else ""
    if not EDGE_NAME_RE.fullmatch(name):
        raise ConfigError(f"invalid edge name {raw!r}: use 1-64 of a-z 0-9 _ . -, starting with a letter or digit")
    return name


def validate_database_url(raw: Any) -> str:
    """A `postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?host=/socket/dir]` URL, or ConfigError."""
    url = raw.strip() if isinstance(raw, str) else ""
    parts = urlsplit(url)
    if not url.startswith(("postgresql://", "postgres://")) or not parts.path.strip("/") or (
        not parts.hostname and "host=" not in parts.query
    ):
        raise ConfigError(
            f"invalid database URL {redact_url(url)!r}: expected postgresql://USER@HOST[:PORT]/DATABASE "
            "(or postgresql://USER@/DATABASE?host=/socket/dir)"
        )
    return url


def redact_url(url: str) -> str:
    """`url` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def default_edge_name() -> str:
    """The host's name as an edge name ("edge" when it is not one)."""
    name = socket.gethostname().split(".")[0].lower()
    return name if EDGE_NAME_RE.fullmatch(name) else "edge"


def _user_name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError("expected a user name")
    return raw.strip()


def load_edge_config(home: Path) -> EdgeConfig:
    """Read and validate `home/edge.yml`."""
    home = Path(home)
    path = home / EDGE_CONFIG_NAME
    data = load_yaml(path)
    known = {
        "zone", "public-ip", "https-listen", "tunnel-listen", "dns-listen", "user", *ACME_KEYS, "http-redirect-exempt",
        "tcp-ports", "udp-ports", "database", "edge-name",
    }
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
        tcp_ports=value("tcp-ports", parse_port_range, None),
        udp_ports=value("udp-ports", parse_port_range, None),
        database=value("database", validate_database_url, None),
        edge_name=value("edge-name", validate_edge_name, None),
    )
    try:
        check_port_ranges(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if os.environ.get(DATABASE_URL_ENV):
        try:
            validate_database_url(os.environ[DATABASE_URL_ENV])
        except ConfigError as exc:
            raise ConfigError(f"{DATABASE_URL_ENV}: {exc}") from None
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
        "tcp-ports": str(cfg.tcp_ports) if cfg.tcp_ports else None,
        "udp-ports": str(cfg.udp_ports) if cfg.udp_ports else None,
        "database": cfg.database,
        "edge-name": cfg.edge_name,
    }
    data.update({key: value for key, value in optional.items() if value is not None})
    write_private(cfg.home / EDGE_CONFIG_NAME, yaml.safe_dump(data, sort_keys=False))
