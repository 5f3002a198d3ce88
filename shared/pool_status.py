"""The pool-status document a connector answers a `status` stream with (sans-IO).

The edge asks one session of each connector for `STATUS_TARGET` (only connectors that
registered `FEATURE_STATUS`); the answer is a JSON document of at most
`MAX_STATUS_BYTES`: per origin pool its policy and, per origin, its URL (without
userinfo), health, requests in flight and the last health check. See docs/dashboard.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit, urlunsplit

STATUS_TARGET = b"/pools"
MAX_STATUS_BYTES = 64 * 1024  # larger documents are cut at a whole pool and marked truncated
MAX_URL_LENGTH = 256  # an origin URL longer than this is cut (with "…")


@dataclass(frozen=True)
class OriginState:
    url: str
    healthy: bool
    in_flight: int
    requests: int
    checks_failed: int
    last_check: bool | None = None  # the last health check passed (None: not checked yet, or no checks)
    checked_at: float | None = None  # when, in seconds since the epoch


@dataclass(frozen=True)
class PoolState:
    name: str
    policy: str
    checked: bool  # the pool has a healthCheck
    retries: int
    origins: tuple[OriginState, ...]


@dataclass(frozen=True)
class PoolReport:
    pools: tuple[PoolState, ...]
    truncated: bool = False  # pools beyond MAX_STATUS_BYTES were left out


def public_url(url: str) -> str:
    """`url` without userinfo (a password must not leave the connector), bounded in length."""
    try:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    except ValueError:
        url = url.rpartition("@")[2]
    return url if len(url) <= MAX_URL_LENGTH else url[: MAX_URL_LENGTH - 1] + "…"


def encode(pools: list[PoolState]) -> bytes:
    """The document for `pools`, at most MAX_STATUS_BYTES: pools that do not fit are left out."""
    parts: list[bytes] = []
    size = 32  # the envelope
    truncated = False
    for pool in pools:
        part = json.dumps(asdict(pool), separators=(",", ":")).encode()
        if size + len(part) + 1 > MAX_STATUS_BYTES:
            truncated = True
            break
        parts.append(part)
        size += len(part) + 1
    return b'{"pools":[' + b",".join(parts) + b'],"truncated":' + (b"true" if truncated else b"false") + b"}"


def decode(body: bytes) -> PoolReport:
    """Parse a connector's document; raise ValueError when it is not one."""
    if len(body) > MAX_STATUS_BYTES:
        raise ValueError(f"pool status of {len(body)} bytes (limit {MAX_STATUS_BYTES})")
    try:
        document = json.loads(body)
        pools = tuple(
            PoolState(
                name=str(pool["name"]), policy=str(pool["policy"]), checked=pool["checked"] is True,
                retries=int(pool["retries"]), origins=tuple(_origin(origin) for origin in pool["origins"]),
            )
            for pool in document["pools"]
        )
        return PoolReport(pools, document.get("truncated") is True)
    except (KeyError, TypeError, AttributeError, OverflowError, RecursionError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed pool status: {exc!r}") from None


def _origin(raw: dict) -> OriginState:
    last_check, checked_at = raw.get("last_check"), raw.get("checked_at")
    return OriginState(
        url=public_url(str(raw["url"])), healthy=raw["healthy"] is True, in_flight=int(raw["in_flight"]),
        requests=int(raw["requests"]), checks_failed=int(raw["checks_failed"]),
        last_check=last_check if isinstance(last_check, bool) else None,
        checked_at=float(checked_at) if _is_time(checked_at) else None,
    )


def _is_time(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value < 1e11
