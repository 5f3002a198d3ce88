"""A hostname's policy: IP allow/deny lists, a rate limit, and who may pass Access.

Pure: `Policy.parse` validates what the API receives, `Policy.to_json` is what
the registry stores. Any allowed token or email makes the hostname require Access.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from shared.errors import ConfigError
from shared.values import parse_duration

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ENTRIES = 256  # per list in one policy
MAX_RATE_WINDOW = 86400.0  # seconds
RATE_LIMIT_RE = re.compile(r"(\d+)/(.+)")
SIZE_RE = re.compile(r"(\d+)\s*([kmg]?)(?:i?b)?", re.IGNORECASE)
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
MAX_BODY_LIMIT = 1024**4  # the largest --max-body accepted: 1 TiB
EMAIL_RE = re.compile(r"[^@\s|]+@[^@\s|]+\.[^@\s|]+")


@dataclass(frozen=True)
class RateLimit:
    """At most `requests` per client IP in each `window` seconds."""

    requests: int
    window: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """`N/WINDOW`, e.g. `100/60s` or `5/1m`."""
        match = RATE_LIMIT_RE.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(f"invalid rate limit {text!r}: use N/WINDOW, e.g. 100/60s")
        try:
            window = parse_duration(match.group(2))
        except ConfigError:
            raise ConfigError(f"invalid rate limit window {match.group(2)!r}: use a duration like 60s or 1m") from None
        requests = int(match.group(1))
        if requests < 1 or not 1.0 <= window <= MAX_RATE_WINDOW:
            raise ConfigError(f"invalid rate limit {text!r}: at least 1 request per 1s-24h window")
        return cls(requests, window)

    def __str__(self) -> str:
        return f"{self.requests}/{self.window:g}s"


def parse_size(text: Any) -> int:
    """Bytes from `1048576`, `512k`, `10m`, `1g` (binary units; `10MiB`, `10MB` read the same)."""
    match = SIZE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    elif match is not None:
        size = int(match.group(1)) * SIZE_UNITS[match.group(2).lower()]
    else:
        raise ConfigError(f"invalid size {text!r}: use bytes or a number with k, m or g, e.g. 10m")
    if not 1 <= size <= MAX_BODY_LIMIT:
        raise ConfigError(f"invalid size {text!r}: from 1 byte to 1 TiB")
    return size


def format_size(size: int) -> str:
    for unit in ("g", "m", "k"):
        if size % SIZE_UNITS[unit] == 0:
            return f"{size // SIZE_UNITS[unit]}{unit}"
    return str(size)


@dataclass(frozen=True)
class Policy:
    allow_tokens: tuple[str, ...] = ()
    allow_emails: tuple[str, ...] = ()
    allow_ips: tuple[IpNetwork, ...] = ()
    deny_ips: tuple[IpNetwork, ...] = ()
    rate_limit: RateLimit | None = None
    max_body: int | None = None  # request body bytes; larger bodies get 413

    @property
    def requires_access(self) -> bool:
        return bool(self.allow_tokens or self.allow_emails)

    @classmethod
    def parse(cls, raw: Any) -> Policy:
        """A policy from its JSON form (the API body and the stored value); ConfigError if invalid."""
        if not isinstance(raw, dict):
            raise ConfigError("a policy must be a JSON object")
        unknown = set(raw) - {"allow_tokens", "allow_emails", "allow_ips", "deny_ips", "rate_limit", "max_body"}
        if unknown:
            raise ConfigError(f"unknown policy field {sorted(unknown)[0]!r}")
        rate = raw.get("rate_limit")
        max_body = raw.get("max_body")
        return cls(
            allow_tokens=tuple(_strings(raw, "allow_tokens")),
            allow_emails=tuple(_email(e) for e in _strings(raw, "allow_emails")),
            allow_ips=tuple(_cidr(c) for c in _strings(raw, "allow_ips")),
            deny_ips=tuple(_cidr(c) for c in _strings(raw, "deny_ips")),
            rate_limit=RateLimit.parse(rate) if rate is not None else None,
            max_body=parse_size(max_body) if max_body is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "allow_tokens": list(self.allow_tokens),
            "allow_emails": list(self.allow_emails),
            "allow_ips": [str(n) for n in self.allow_ips],
            "deny_ips": [str(n) for n in self.deny_ips],
            "rate_limit": str(self.rate_limit) if self.rate_limit else None,
            "max_body": format_size(self.max_body) if self.max_body else None,
        }


def _strings(raw: dict, key: str) -> list[str]:
    values = raw.get(key) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"policy field '{key}' must be a list of strings")
    if len(values) > MAX_ENTRIES:
        raise ConfigError(f"policy field '{key}' holds more than {MAX_ENTRIES} entries")
    return list(dict.fromkeys(values))


def _cidr(text: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ConfigError(f"invalid CIDR {text!r}: use e.g. 203.0.113.0/24, 198.51.100.7 or 2001:db8::/32") from None


def _email(text: str) -> str:
    if not EMAIL_RE.fullmatch(text.strip()):
        raise ConfigError(f"invalid email address {text!r}")
    return text.strip().lower()
