"""Ingress rules, validated and matched exactly as cloudflared does.

Pure: raw rules from `config.yml` → an immutable `Ingress`; `match(host, path)`
picks the first rule whose hostname and path match, else the last rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from shared.config import line_of, type_name, where
from shared.errors import ConfigError

RULE_KEYS = frozenset({"hostname", "path", "service", "originRequest"})
HTTP_SCHEMES = {"http": ("http", 80), "ws": ("http", 80), "https": ("https", 443), "wss": ("https", 443)}
TCP_DEFAULT_PORTS = {"ssh": 22, "rdp": 3389, "smb": 445, "tcp": 7864}


@dataclass(frozen=True)
class HttpService:
    """Proxy to an HTTP(S) origin; ws:// and wss:// are the same as http:// and https://."""

    scheme: str  # "http" | "https"
    host: str
    port: int


@dataclass(frozen=True)
class UnixService:
    """HTTP (or HTTPS with `tls`) over a unix socket: `unix:/path`, `unix+tls:/path`."""

    path: str
    tls: bool = False


@dataclass(frozen=True)
class TcpService:
    """A raw byte stream (ssh://, rdp://, smb://, tcp:// or any other scheme), for `burrow access`."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True)
class StatusService:
    """A fixed empty response: `http_status:404`."""

    code: int


@dataclass(frozen=True)
class HelloWorldService:
    """The built-in test page: `hello_world`."""


Service = HttpService | UnixService | TcpService | StatusService | HelloWorldService


@dataclass(frozen=True)
class Rule:
    """One validated rule. `hostname` None matches every host; `index` is 1-based, as users see it."""

    hostname: str | None
    path: re.Pattern | None
    service: Service
    origin_request: dict = field(default_factory=dict)
    index: int = 0

    def matches(self, host: str, path: str) -> bool:
        """`host` must already be normalized and `path` decoded (see `Ingress.match`)."""
        if self.hostname is not None and host != self.hostname:
            if not (self.hostname.startswith("*.") and host.endswith(self.hostname[1:])):
                return False
        return self.path is None or self.path.search(path) is not None


class _RuleError(Exception):
    """A problem with one field of one rule; `from_rules` adds the file, line and rule number."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


def _parse_service(text: object) -> Service:
    if text is None or text == "":
        raise _RuleError("service", "missing (e.g. service: http://localhost:8000)")
    if not isinstance(text, str):
        raise _RuleError("service", f"must be a string, not {type_name(text)}")
    for prefix, tls in (("unix:", False), ("unix+tls:", True)):
        if text.startswith(prefix):
            if not text[len(prefix) :]:
                raise _RuleError("service", f"{text!r} needs a socket path, e.g. unix:/run/app.sock")
            return UnixService(text[len(prefix) :], tls)
    if text.startswith("http_status:"):
        code = text[len("http_status:") :]
        if not re.fullmatch(r"[0-9]+", code) or not 100 <= int(code) <= 999:
            raise _RuleError("service", f"invalid HTTP status code {code!r} in {text!r} (100-999)")
        return StatusService(int(code))
    if text in ("hello_world", "hello-world"):
        return HelloWorldService()
    if text in ("bastion", "socks-proxy"):
        raise _RuleError("service", f"{text} is not supported by burrow")
    try:
        url = urlsplit(text)
        host, port = url.hostname, url.port
    except ValueError as exc:
        raise _RuleError("service", f"{text!r} is an invalid address: {exc}") from None
    if not url.scheme or not host:
        raise _RuleError(
            "service", f"{text!r} is an invalid address, please make sure it has a scheme and a hostname"
        )
    if url.path not in ("", "/") or url.query or url.fragment:
        raise _RuleError(
            "service",
            f"{text!r} is an invalid address, ingress rules don't support proxying to a different path "
            "on the origin service; the path will be the same as the eyeball request's path",
        )
    if url.scheme in HTTP_SCHEMES:
        scheme, default_port = HTTP_SCHEMES[url.scheme]
        return HttpService(scheme, host, port or default_port)
    port = port or TCP_DEFAULT_PORTS.get(url.scheme)
    if not port:
        raise _RuleError("service", f"{text!r} needs a port: {url.scheme}:// has no default port")
    return TcpService(url.scheme, host, port)


def _parse_hostname(raw: object) -> str | None:
    if raw is None or raw in ("", "*"):
        return None
    if not isinstance(raw, str):
        raise _RuleError("hostname", f"must be a string, not {type_name(raw)}")
    name = raw.strip().lower().rstrip(".")
    if ":" in name:
        raise _RuleError("hostname", f"{raw!r} contains a port; ingress hostnames can't have ports")
    wildcard = name.startswith("*.")
    base = name[2:] if wildcard else name
    if "*" in base or not base:
        raise _RuleError(
            "hostname",
            f'{raw!r}: a wildcard ("*") is allowed only as the whole first label, e.g. "*.example.com"',
        )
    if not base.isascii():
        try:
            base = base.encode("idna").decode("ascii")
        except UnicodeError:
            raise _RuleError("hostname", f"{raw!r} is not a valid hostname") from None
    return "*." + base if wildcard else base


def _parse_path(raw: object) -> re.Pattern | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise _RuleError("path", f"must be a string (a regular expression), not {type_name(raw)}")
    try:
        return re.compile(raw)
    except re.error as exc:
        raise _RuleError("path", f"invalid regex {raw!r}: {exc}") from None


def _parse_rule(raw: object, index: int, count: int, default_origin_request: Mapping) -> Rule:
    if not isinstance(raw, Mapping):
        raise _RuleError(None, "must be a mapping with hostname, path, service and originRequest")
    for key in raw:
        if key not in RULE_KEYS:
            raise _RuleError(key, f"unknown key (expected {', '.join(sorted(RULE_KEYS))})")
    hostname = _parse_hostname(raw.get("hostname"))
    path = _parse_path(raw.get("path"))
    is_last = index == count
    if is_last and not (hostname is None and path is None):
        raise _RuleError(
            None,
            "the last rule must match every request: leave out hostname (or use \"*\") and path, "
            "e.g. service: http_status:404",
        )
    if not is_last and hostname is None and path is None:
        raise _RuleError(None, f"rule {index} is a catch-all, so the rules after it would never match")
    service = _parse_service(raw.get("service"))
    origin_request = raw.get("originRequest") or {}
    if not isinstance(origin_request, Mapping):
        raise _RuleError("originRequest", "must be a mapping")
    return Rule(hostname, path, service, {**default_origin_request, **origin_request}, index)


@dataclass(frozen=True)
class Ingress:
    """Validated ingress rules; the last one is the catch-all."""

    rules: tuple[Rule, ...]

    @classmethod
    def from_rules(
        cls, raw_rules: Sequence, default_origin_request: Mapping | None = None, source: str = "config.yml"
    ) -> Ingress:
        """Validate every rule (cloudflared's rules), or raise ConfigError naming rule, field and line."""
        if not raw_rules:
            raise ConfigError(f"{source}: no ingress rules")
        defaults = dict(default_origin_request or {})
        rules = []
        for index, raw in enumerate(raw_rules, start=1):
            try:
                rules.append(_parse_rule(raw, index, len(raw_rules), defaults))
            except _RuleError as exc:
                line = line_of(raw, exc.key)
                field_name = f"{exc.key}: " if exc.key else ""
                raise ConfigError(f"{where(source, line)}: ingress rule {index}: {field_name}{exc}") from None
        return cls(tuple(rules))

    def match(self, host: str, path: str) -> Rule:
        """The first rule matching `host` (any :port dropped) and `path` (query dropped, %-escapes
        decoded as Go's URL.Path is); the last rule when none does."""
        host = _normalize_host(host)
        path = unquote(path.split("?", 1)[0])
        for rule in self.rules:
            if rule.matches(host, path):
                return rule
        return self.rules[-1]


def _normalize_host(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")
