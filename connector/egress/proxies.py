"""Which proxy reaches a host: `--proxy`, config.yml `proxy:`, or curl's environment variables.

Precedence: the flag, then the config key, then `https_proxy`/`HTTPS_PROXY`, then
`all_proxy`/`ALL_PROXY` (lowercase first, as curl reads them; every Burrow connection is TLS,
so `http_proxy` never applies). `no_proxy`/`NO_PROXY` exempts hosts from every one of them,
as curl does: `*`, host names (a name also covers its subdomains; a leading dot is ignored),
IP addresses and CIDR blocks, separated by commas or spaces.

A proxy URL's credentials are secrets: `str(proxy)` and every message show `user:***`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from shared.errors import ConfigError
from shared.values import Secret

SCHEMES = {"http": 1080, "socks5": 1080, "socks5h": 1080}  # scheme → curl's default port
PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")


@dataclass(frozen=True)
class ProxyURL:
    """`http://[user:pass@]HOST:PORT`, `socks5://…` (names resolved here) or `socks5h://…` (by the proxy)."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: Secret | None = None

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self.username is None:
            return None
        return self.username, (self.password.value.decode() if self.password else "")

    def url(self, with_secret: bool = False) -> str:
        """The URL; its password only when `with_secret` (for handing it to httpx, never to a log)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = ""
        if self.username is not None:
            password = quote(self.credentials[1], safe="") if with_secret else "***"
            user = f"{quote(self.username, safe='')}:{password}@"
        return f"{self.scheme}://{user}{host}:{self.port}"

    def __str__(self) -> str:
        return self.url()

    __repr__ = __str__


def parse_proxy_url(text: str, source: str) -> ProxyURL:
    """A proxy URL as curl takes it (`HOST:PORT` alone means `http://`); `source` names where it came from."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{source}: expected a proxy URL like http://HOST:PORT or socks5://HOST:PORT")
    text = text.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    shown = _redacted(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"{source}: {shown!r} must be http://, socks5:// or socks5h://")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{source}: {shown!r} has an invalid port") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{source}: {shown!r} must be SCHEME://[USER:PASSWORD@]HOST:PORT")
    username = unquote(parts.username) if parts.username is not None else None
    password = Secret(unquote(parts.password).encode()) if parts.password is not None else None
    return ProxyURL(scheme, parts.hostname, port or SCHEMES[scheme], username, password)


def _redacted(text: str) -> str:
    """`text` with the password of its userinfo (if any) replaced by ***, for error messages."""
    scheme, sep, rest = text.rpartition("://")
    userinfo, at, hostport = rest.rpartition("@")
    if not at:
        return text
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{hostport}"


@dataclass(frozen=True)
class ProxyChoice:
    """The configured proxy and the hosts that bypass it; `for_host` decides per destination."""

    proxy: ProxyURL | None = None
    no_proxy: tuple[str, ...] = ()

    def for_host(self, host: str) -> ProxyURL | None:
        """The proxy to reach `host` through, or None to dial it directly."""
        if self.proxy is None or bypasses(host, self.no_proxy):
            return None
        return self.proxy

    def httpx_proxy(self, host: str) -> str | None:
        """`for_host(host)` as the `proxy=` an httpx transport takes (the URL with its password)."""
        proxy = self.for_host(host)
        return proxy.url(with_secret=True) if proxy is not None else None


def choose(
    flag: str | None = None, config: str | None = None, config_source: str = "config.yml", env: Mapping[str, str] | None = None
) -> ProxyChoice:
    """The proxy from `--proxy`, else config.yml `proxy:` (read from `config_source`), else the
    environment; NO_PROXY applies to all of them."""
    env = os.environ if env is None else env
    no_proxy = next((env[name] for name in NO_PROXY_VARIABLES if env.get(name)), "")
    entries = tuple(entry for entry in no_proxy.replace(",", " ").split() if entry)
    if flag:
        return ProxyChoice(parse_proxy_url(flag, "--proxy"), entries)
    if config:
        return ProxyChoice(parse_proxy_url(config, f"{config_source}: proxy"), entries)
    for name in PROXY_VARIABLES:
        if env.get(name):
            return ProxyChoice(parse_proxy_url(env[name], f"${name}"), entries)
    return ProxyChoice(None, entries)


def bypasses(host: str, entries: tuple[str, ...]) -> bool:
    """True when NO_PROXY `entries` exempt `host`: curl's rules (see the module docstring)."""
    host = host.strip("[]").rstrip(".").lower()
    address = _address(host)
    for entry in entries:
        entry = entry.strip().lower()
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
