"""`config.yml`, cloudflared's connector config: the tunnel, its credentials file, ingress
rules (validated by `connector.ingress`) and `originRequest`. Errors name the file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ConfigError
from shared.yaml_lines import line_of, load_yaml, type_error, where

MAX_HA_CONNECTIONS = 16
TYPED_KEYS = (  # key, its type, what the error message says it should be
    ("tunnel", str, "a tunnel name or UUID"),
    ("credentials-file", str, "a path"),
    ("ingress", list, "a list of rules"),
    ("originRequest", dict, "a mapping"),
    ("pools", dict, "a mapping of pool names to pools"),
    ("proxy", str, "a proxy URL like http://HOST:PORT or socks5://HOST:PORT"),
    ("tcp", list, "a list of {port, service} entries"),
    ("udp", list, "a list of {port, service} entries"),
)


@dataclass(frozen=True)
class WarpRouting:
    """`warp-routing` (cloudflared's key): serve private-network flows (`burrow tunnel route ip`);
    `resolveNames` lets the connector resolve hostnames that SOCKS5 clients send."""

    enabled: bool = False
    resolve_names: bool = False


@dataclass(frozen=True)
class ConnectorConfig:
    """A connector's `config.yml`. `ingress` holds the raw rules, `pools` the raw pools, `tcp` and `udp`
    the raw public-port routes (see `connector.ingress`); `extra` holds every other top-level key, for
    the caller to use or warn about."""

    tunnel: str | None = None
    credentials_file: Path | None = None
    ingress: tuple[dict, ...] = ()
    origin_request: dict = field(default_factory=dict)
    ha_connections: int | None = None
    pools: dict | None = None
    warp_routing: WarpRouting = WarpRouting()
    proxy: str | None = None  # the connector's egress proxy URL (see connector.egress)
    tcp: list | None = None
    udp: list | None = None
    extra: dict = field(default_factory=dict)


def load_connector_config(path: Path) -> ConnectorConfig:
    """Read a cloudflared-style `config.yml`. Ingress rules keep their YAML lines (see `line_of`)."""
    path = Path(path)
    data = load_yaml(path)
    for key, kind, expected in TYPED_KEYS:
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise type_error(path, data, key, expected)
    tunnel, credentials = data.get("tunnel"), data.get("credentials-file")
    ingress, origin_request = data.get("ingress"), data.get("originRequest")
    ha = data.get("ha-connections")
    if ha is not None and (not isinstance(ha, int) or isinstance(ha, bool) or not 1 <= ha <= MAX_HA_CONNECTIONS):
        line = line_of(data, "ha-connections")
        raise ConfigError(f"{where(str(path), line)}: ha-connections must be a whole number from 1 to {MAX_HA_CONNECTIONS}")
    known = {"tunnel", "credentials-file", "ingress", "originRequest", "ha-connections", "pools", "warp-routing", "proxy", "tcp", "udp"}
    return ConnectorConfig(
        tunnel=tunnel,
        credentials_file=Path(credentials).expanduser() if credentials else None,
        ingress=tuple(ingress or ()),
        origin_request=origin_request or {},
        ha_connections=ha,
        pools=data.get("pools"),
        warp_routing=_warp_routing(path, data),
        proxy=data.get("proxy"),
        tcp=data.get("tcp"),
        udp=data.get("udp"),
        extra={key: value for key, value in data.items() if key not in known},
    )


def _warp_routing(path: Path, data: dict) -> WarpRouting:
    raw = data.get("warp-routing")
    if raw is None:
        return WarpRouting()
    if not isinstance(raw, dict):
        raise type_error(path, data, "warp-routing", "a mapping like {enabled: true}")
    for key, value in raw.items():
        if key not in ("enabled", "resolveNames"):
            raise ConfigError(f"{where(str(path), line_of(data, 'warp-routing'))}: unknown key warp-routing.{key} (enabled, resolveNames)")
        if not isinstance(value, bool):
            raise ConfigError(f"{where(str(path), line_of(data, 'warp-routing'))}: warp-routing.{key} must be true or false")
    return WarpRouting(raw.get("enabled", False), raw.get("resolveNames", False))
