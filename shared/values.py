"""Small values in config files and flags: durations (cloudflared's syntax), host:port
addresses, DNS names, secrets that never print, and the Burrow home directory."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ConfigError

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
