"""The per-hostname gate in front of every tunnel: IP lists, then the rate limit, then Access.

`decide` is pure (snapshot, request, clock in; a verdict out); `Gate` is the thin
trio shell the proxy calls right after it found the hostname's tunnel. It keeps
the registry's policies and tokens in memory, refreshed after each admin API
write and every `REFRESH_INTERVAL` seconds (for writes made by other edges).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import trio

from edge.access import login
from edge.access.keys import KEY_PUBLISH_INTERVAL, Signer
from edge.registry.models import AccessSnapshot
from edge.registry.policy import Policy, RateLimit
from edge.registry.store import Registry
from edge.routing.proxy import Exchange
from shared.crypto import hash_secret, verify_secret
from shared.events import Headers, RequestHead
from shared.pages import error_page

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 5.0  # seconds between snapshot polls
MAX_TRACKED_CLIENTS = 100_000  # rate-limit windows kept in memory; expired ones are swept beyond this
CLIENT_ID = b"burrow-access-client-id"
CLIENT_SECRET = b"burrow-access-client-secret"
ASSERTION = b"burrow-access-jwt-assertion"
EMPTY = AccessSnapshot({}, {}, {})


@dataclass(frozen=True)
class Refuse:
    status: int
    message: str
    headers: Headers = ()


@dataclass(frozen=True)
class Admit:
    """Pass the request on; with a `subject`, stamped with an assertion for it."""

    subject: str = ""
    email: str = ""


class RateLimiter:
    """Fixed windows per (hostname, client IP), starting at each window's first request."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}
        self.refused = 0  # requests answered 429 so far

    def hit(self, key: tuple[str, str], limit: RateLimit, now: float) -> float:
        """Count one request; 0 when allowed, else the seconds until the window ends."""
        start, count = self._windows.get(key, (now, 0))
        if now - start >= limit.window:
            start, count = now, 0
        if count >= limit.requests:
            self.refused += 1
            return start + limit.window - now
        if len(self._windows) >= MAX_TRACKED_CLIENTS and key not in self._windows:
            self._sweep(now, limit.window)
        self._windows[key] = (start, count + 1)
        return 0.0

    def _sweep(self, now: float, window: float) -> None:
        self._windows = {k: v for k, v in self._windows.items() if now - v[0] < window}
        while len(self._windows) >= MAX_TRACKED_CLIENTS:  # still full of live windows: forget the oldest
            self._windows.pop(next(iter(self._windows)))


def policy_for(snapshot: AccessSnapshot, host: str) -> tuple[str, Policy] | None:
    """The policy of `host`, or of the wildcard route covering it."""
    found = snapshot.policies.get(host)
    if found is None and "." in host:
        found = snapshot.policies.get("*." + host.split(".", 1)[1])
    return found


def decide(
    snapshot: AccessSnapshot,
    host: str,
    client_ip: str,
    head: RequestHead,
    limiter: RateLimiter,
    sessions: login.Sessions,
    now: float,
) -> Refuse | Admit:
    found = policy_for(snapshot, host)
    if found is None:
        return Admit()
    owner, policy = found
    refused = screen(policy, host, client_ip, limiter, now)
    if refused is not None:
        return refused
    if not policy.requires_access:
        return Admit()
    client_id, secret = head.header(CLIENT_ID), head.header(CLIENT_SECRET)
    if client_id is not None or secret is not None:
        return _service_token(snapshot, owner, policy, host, client_id, secret)
    email = sessions.verify(login.session_cookie(head), host, now)
    if email and email in policy.allow_emails and (owner, email) in snapshot.users:
        return Admit(email, email)
    if policy.allow_emails and b"text/html" in (head.header(b"accept") or b""):
        return Refuse(302, "sign in first", ((b"location", login.login_location(head.target)),))
    return Refuse(403, f"{host} requires Access: send a service token or sign in")


def screen(policy: Policy, host: str, client_ip: str, limiter: RateLimiter, now: float) -> Refuse | None:
    """The IP lists, then the rate limit: a refusal, or None to go on."""
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return Refuse(403, f"access to {host} is denied")
    if any(ip in net for net in policy.deny_ips) or (policy.allow_ips and not any(ip in net for net in policy.allow_ips)):
        return Refuse(403, f"access to {host} is denied from {client_ip}")
    if policy.rate_limit is not None:
        wait = limiter.hit((host, client_ip), policy.rate_limit, now)
        if wait > 0:
            retry = str(max(1, math.ceil(wait))).encode()
            return Refuse(429, f"too many requests to {host}; retry in {retry.decode()}s", ((b"retry-after", retry),))
    return None


def _service_token(
    snapshot: AccessSnapshot, owner: str, policy: Policy, host: str, client_id: bytes | None, secret: bytes | None
) -> Refuse | Admit:
    token = snapshot.tokens.get((client_id or b"").decode("latin-1"))
    stored = token.secret_hash if token is not None else hash_secret("")  # same cost for unknown ids
    valid = verify_secret(secret or b"", stored)
    if token is None or not valid or token.account_id != owner or token.name not in policy.allow_tokens:
        return Refuse(403, f"the service token is not allowed on {host}")
    return Admit(token.name)


def with_assertion(assertion: str, head: RequestHead) -> RequestHead:
    """`head` (as forwarded) with the edge's assertion added and the Access session cookie removed."""
    return replace(head, headers=login.without_session_cookie(head.headers) + ((ASSERTION, assertion.encode()),))


def unchanged(head: RequestHead) -> RequestHead:
    return head


class Gate:
    """Applies hostname policies to visitor requests."""

    def __init__(self, registry: Registry, signer: Signer) -> None:
        self.registry = registry
        self.signer = signer
        self.snapshot = EMPTY
        self.limiter = RateLimiter()
        self.sessions = login.Sessions(signer.derive(b"burrow access sessions"))

    async def refresh(self) -> None:
        self.snapshot = await trio.to_thread.run_sync(self.registry.access_snapshot)

    async def publish_key(self) -> None:
        await trio.to_thread.run_sync(self.registry.publish_access_key, self.signer.kid, self.signer.public_jwk())

    async def run(self) -> None:
        """Poll the registry, and keep this edge's key marked as in use."""
        published = time.monotonic()
        while True:
            await trio.sleep(REFRESH_INTERVAL)
            await self.refresh()
            if time.monotonic() - published >= KEY_PUBLISH_INTERVAL:
                await self.publish_key()
                published = time.monotonic()

    def max_body(self, host: str) -> int | None:
        """The request body limit of `host`'s policy, if any."""
        found = policy_for(self.snapshot, host)
        return found[1].max_body if found is not None else None

    async def admit(self, exchange: Exchange, host: str) -> Callable[[RequestHead], RequestHead] | None:
        """What to do to the forwarded head (add the assertion when Access passed the request),
        or None once the gate has answered the visitor itself (a refusal, or the login pages)."""
        found = policy_for(self.snapshot, host)
        if found is None:
            return unchanged  # no policy: what `decide` would admit unchanged, without its work
        head = exchange.head
        now = time.time()
        if found[1].allow_emails and head.target.startswith(login.PREFIX):
            verdict = screen(found[1], host, exchange.client[0], self.limiter, now)
            if verdict is None:
                await login.serve(exchange, host, found, self.snapshot, self.sessions, now)
                return None
            await send_refusal(exchange, verdict)
            return None
        verdict = decide(self.snapshot, host, exchange.client[0], head, self.limiter, self.sessions, now)
        if isinstance(verdict, Refuse):
            # debug: a flood must not become a flood of log lines
            log.debug("access.refused host=%s client=%s status=%d", host, exchange.client[0], verdict.status)
            await send_refusal(exchange, verdict)
            return None
        if not verdict.subject:
            return unchanged
        return partial(with_assertion, self.signer.assertion(host, verdict.subject, email=verdict.email))


async def send_refusal(exchange: Exchange, verdict: Refuse) -> None:
    head, body = error_page(verdict.status, "edge", verdict.message)
    await exchange.send_response(replace(head, headers=head.headers + verdict.headers))
    await exchange.send_body(body)
    await exchange.end()


async def open_gate(registry: Registry, home: Path, issuer: str) -> Gate:
    """The edge's gate: its signing key loaded (made on first use) and published, policies loaded."""
    gate = Gate(registry, Signer.load_or_create(home, issuer))
    await gate.publish_key()
    await gate.refresh()
    return gate


async def refresh_all(refresher, gate: Gate, *others) -> None:
    """After an admin API write: the zone snapshot (routes), the gate's policies, and `others`
    (e.g. the private networks)."""
    await refresher.refresh()
    await gate.refresh()
    for other in others:
        await other.refresh()
