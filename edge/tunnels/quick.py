"""Quick tunnels (sans-IO): `burrow tunnel --url` against an edge, with no account.

Each quick tunnel gets a random `WORD-WORD-WORD.quick.<zone>` name and an
ephemeral secret (the edge keeps its hash, in memory only: no registry rows).
It lives while it has sessions and is forgotten `grace` seconds after its last
session ended (or after it was created, if no session ever came). One source
(IPv4 address, IPv6 /64) may create `per_source` of them per `window`. The caller
passes the time.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import coolname

from edge.dns import hostnames
from edge.dns.zone import QUICK_LABEL
from shared.crypto import hash_secret, verify_secret
from shared.errors import AuthError, BurrowError, ConfigError
from shared.values import parse_duration

DEFAULT_GRACE = 60.0  # `--quick-grace`: seconds a quick tunnel outlives its last session
DEFAULT_PER_SOURCE = 10  # `--quick-tunnels-per-ip 10/h`
DEFAULT_WINDOW = 3600.0
DEFAULT_MAX_STREAMS = 100  # `--quick-max-streams`: concurrent requests per quick tunnel (then 429)
DEFAULT_MAX_BODY = 100 * 1024 * 1024  # `--quick-max-body 100m`: request body bytes (then 413)
MAX_QUICK_TUNNELS = 10_000  # alive at once on one edge (then 503)
MAX_SOURCES = 10_000  # source addresses the per-source window tracks
NAME_WORDS = 3
NAME_ATTEMPTS = 20  # fresh names tried before giving up (a collision is rare: ~3.6e8 names)


class QuickRefused(BurrowError):
    """A quick tunnel cannot be created now; `status` is the HTTP answer (429, 503)."""

    def __init__(self, message: str, status: int, retry_after: float = 60.0) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class QuickSettings:
    grace: float = DEFAULT_GRACE
    per_source: int = DEFAULT_PER_SOURCE
    window: float = DEFAULT_WINDOW
    max_streams: int = DEFAULT_MAX_STREAMS
    max_body: int = DEFAULT_MAX_BODY
    max_tunnels: int = MAX_QUICK_TUNNELS


@dataclass
class QuickTunnel:
    id: str
    hostname: str
    secret_hash: str
    source: str
    sessions: int = 0
    idle_since: float | None = None  # when the last session ended (creation, before the first); None while serving


class SourceWindow:
    """At most `limit` events per `window` seconds from one source (a sliding log)."""

    def __init__(self, limit: int, window: float, max_sources: int = MAX_SOURCES) -> None:
        self.limit = limit
        self.window = window
        self.max_sources = max_sources
        self._events: dict[str, deque[float]] = {}

    def take(self, source: str, now: float) -> bool:
        """Record an event from `source` unless it already had `limit` in the last `window`."""
        events = self._events.get(source)
        if events is None:
            self._make_room(now)
            events = self._events[source] = deque()
        while events and now - events[0] >= self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def retry_after(self, source: str, now: float) -> float:
        """Seconds until `source` may take again."""
        events = self._events.get(source)
        return max(0.0, events[0] + self.window - now) if events and len(events) >= self.limit else 0.0

    def _make_room(self, now: float) -> None:
        if len(self._events) < self.max_sources:
            return
        for source in [s for s, events in self._events.items() if not events or now - events[-1] >= self.window]:
            del self._events[source]
        while len(self._events) >= self.max_sources:  # all recent: forget the one seen longest ago
            del self._events[min(self._events, key=lambda s: self._events[s][-1] if self._events[s] else 0.0)]


def source_key(address: str) -> str:
    """What the per-source limit counts: an IPv4 address, or an IPv6 /64 (one site's usual share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def new_hostname(zone: str) -> str:
    """`WORD-WORD-WORD.quick.<zone>` from coolname's word lists (its phrases like `of-x` skipped)."""
    while (slug := coolname.generate_slug(NAME_WORDS)).count("-") != NAME_WORDS - 1:
        pass  # two thirds of slugs are three plain words
    return hostnames.normalize(f"{slug}.{QUICK_LABEL}.{zone}")


class QuickTunnels:
    """The edge's quick tunnels: created by anyone (within limits), expired after the grace."""

    def __init__(self, zone: str, settings: QuickSettings = QuickSettings(), name: Callable[[str], str] = new_hostname) -> None:
        self.zone = zone
        self.settings = settings
        self.sources = SourceWindow(settings.per_source, settings.window)
        self._name = name
        self._tunnels: dict[str, QuickTunnel] = {}

    def create(self, source: str, secret: bytes, now: float, taken: Callable[[str], bool]) -> QuickTunnel:
        """A new quick tunnel for `source`, named so that `taken(hostname)` is false (an account's name)."""
        if len(self._tunnels) >= self.settings.max_tunnels:
            raise QuickRefused(f"this edge serves {self.settings.max_tunnels} quick tunnels already; retry later", 503)
        key = source_key(source)
        if not self.sources.take(key, now):
            wait = self.sources.retry_after(key, now)
            raise QuickRefused(
                f"{key} created {self.settings.per_source} quick tunnels in the last {_period(self.settings.window)};"
                f" retry in {wait:.0f}s", 429, retry_after=wait,
            )
        used = {tunnel.hostname for tunnel in self._tunnels.values()}
        for _ in range(NAME_ATTEMPTS):
            hostname = self._name(self.zone)
            if hostname not in used and not taken(hostname):
                break
        else:
            raise QuickRefused("no free quick tunnel name found; retry", 503)
        tunnel = QuickTunnel(str(uuid.uuid4()), hostname, hash_secret(secret), source, idle_since=now)
        self._tunnels[tunnel.id] = tunnel
        return tunnel

    def verify(self, tunnel_id: str, secret: bytes) -> QuickTunnel | None:
        """The quick tunnel `tunnel_id` if the secret is right; None for an id that is no quick tunnel."""
        tunnel = self._tunnels.get(tunnel_id)
        if tunnel is None:
            return None
        if not verify_secret(secret, tunnel.secret_hash):
            raise AuthError("credentials rejected")
        return tunnel

    def is_quick(self, tunnel_id: str) -> bool:
        return tunnel_id in self._tunnels

    def session_started(self, tunnel_id: str) -> None:
        tunnel = self._tunnels[tunnel_id]
        tunnel.sessions += 1
        tunnel.idle_since = None

    def session_ended(self, tunnel_id: str, now: float) -> None:
        tunnel = self._tunnels.get(tunnel_id)
        if tunnel is not None:
            tunnel.sessions -= 1
            if tunnel.sessions == 0:
                tunnel.idle_since = now

    def expire(self, now: float) -> list[QuickTunnel]:
        """Forget (and return) every quick tunnel idle for `grace` seconds or more."""
        expired = [
            tunnel for tunnel in self._tunnels.values()
            if tunnel.idle_since is not None and now - tunnel.idle_since >= self.settings.grace
        ]
        for tunnel in expired:
            del self._tunnels[tunnel.id]
        return expired

    def hosts(self) -> dict[str, str]:
        """hostname → tunnel id of every quick tunnel alive."""
        return {tunnel.hostname: tunnel.id for tunnel in self._tunnels.values()}

    def __len__(self) -> int:
        return len(self._tunnels)


def _period(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds:g} seconds"


def parse_per_period(text: str) -> tuple[int, float]:
    """`10/h` → (10, 3600.0); the period is a duration (`h`, `30m`, `2h`), a bare count is per hour."""
    count, _, period = text.strip().partition("/")
    period = period.strip() or "h"
    try:
        seconds = parse_duration(period if period[:1].isdigit() else "1" + period)
    except ConfigError:
        seconds = 0.0
    if not count.strip().isdigit() or int(count) < 1 or seconds <= 0:
        raise ConfigError(f"--quick-tunnels-per-ip {text!r}: use a count per period, e.g. 10/h or 3/30m")
    return int(count), seconds
