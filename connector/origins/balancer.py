"""Origin pools at run time: which origin takes the next request (round_robin,
least_requests, random), each origin's health from active checks, and an idempotent
request that could not connect sent again to another origin.

`Balancers.update` follows each reload: a pool whose definition did not change keeps
its balancer, and so its origins' health. `Balancers.run` runs the health checks
(restarted after each update); without it every origin counts as healthy.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping

import trio

from connector.ingress.pools import Pool
from connector.ingress.services import HttpService, UnixService
from connector.origins.connect import open_origin_stream, tls_name, uses_tls
from connector.origins.errors import NoHealthyOrigin, OriginTimeout, OriginUnreachable
from shared.errors import OriginError
from shared.events import RequestHead
from shared.pool_status import OriginState, PoolState, public_url
from shared.tunnel_stream import TunnelStream

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
NOT_CONNECTED = (OriginUnreachable, OriginTimeout)  # failures before any byte of the request left
MAX_STATUS_LINE = 8 * 1024
STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])[ \r]")


class Member:
    """One origin of a pool and what the balancer knows of it."""

    __slots__ = (
        "service", "url", "healthy", "passes", "failures", "in_flight", "requests", "checks_failed", "last_check", "checked_at",
    )

    def __init__(self, service: HttpService | UnixService) -> None:
        self.service = service
        self.url = str(service)
        self.healthy = True  # until checks say otherwise
        self.passes = self.failures = 0  # checks in a row
        self.in_flight = self.requests = self.checks_failed = 0
        self.last_check: bool | None = None  # the last health check passed (None: none yet)
        self.checked_at: float | None = None  # when, in seconds since the epoch

    def state(self) -> OriginState:
        return OriginState(
            public_url(self.url), self.healthy, self.in_flight, self.requests, self.checks_failed, self.last_check, self.checked_at,
        )


class Balancer:
    """Picks an origin of one pool for each request and keeps its origins' health."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.members = [Member(service) for service in pool.origins]
        self.retries = 0  # requests sent again to another origin
        self._turn = 0

    def state(self) -> PoolState:
        """What the edge's dashboard shows of this pool (`shared.pool_status`)."""
        pool = self.pool
        return PoolState(pool.name, pool.policy, pool.health_check is not None, self.retries, tuple(m.state() for m in self.members))

    def pick(self, tried: list[Member]) -> Member | None:
        """A healthy origin not in `tried`, by the pool's policy; None if there is none."""
        candidates = [member for member in self.members if member.healthy and member not in tried]
        if not candidates:
            return None
        if self.pool.policy == "random":
            return random.choice(candidates)
        if self.pool.policy == "least_requests":
            return min(candidates, key=lambda member: (member.in_flight, member.requests))
        self._turn += 1
        return candidates[self._turn % len(candidates)]

    async def forward(self, stream: TunnelStream, attempt: Callable[[HttpService | UnixService], Awaitable[None]]) -> None:
        """`attempt(origin)` for an origin of the pool; an idempotent bodiless request whose origin could
        not be connected to goes to the next one, until one answers or every healthy one was tried."""
        head = stream.head
        again = head.method in IDEMPOTENT and not head.has_body
        tried: list[Member] = []
        while True:
            member = self.pick(tried)
            if member is None:
                raise NoHealthyOrigin(f"pool {self.pool.name}: none of its {len(self.members)} origins is healthy")
            member.in_flight += 1
            member.requests += 1
            try:
                return await attempt(member.service)
            except NOT_CONNECTED as exc:
                tried.append(member)
                if not again or stream.response_sent or not any(m.healthy and m not in tried for m in self.members):
                    raise
                self.retries += 1
                log.info("pool.retried pool=%s origin=%s error=%s", self.pool.name, member.url, exc)
            finally:
                member.in_flight -= 1

    # Health checks ------------------------------------------------------------------

    async def check_forever(self) -> None:
        """Check every origin each `interval`, all at once."""
        check = self.pool.health_check
        while True:
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                for member in self.members:
                    nursery.start_soon(self._check, member)
            await trio.sleep_until(started + check.interval)

    async def _check(self, member: Member) -> None:
        status = None
        with trio.move_on_after(self.pool.health_check.timeout):
            try:
                status = await probe(member.service, self.pool)
            except (OriginError, OSError, trio.BrokenResourceError, ValueError) as exc:
                log.debug("pool.check_failed pool=%s origin=%s error=%s", self.pool.name, member.url, exc)
        self.record(member, status is not None and self.pool.health_check.expects(status))

    def record(self, member: Member, passed: bool) -> None:
        """Count one check; cross a threshold and the origin leaves or rejoins the rotation."""
        check = self.pool.health_check
        member.last_check, member.checked_at = passed, time.time()
        if passed:
            member.passes, member.failures = member.passes + 1, 0
            if not member.healthy and member.passes >= check.healthy_threshold:
                member.healthy = True
                log.warning("pool.origin_up pool=%s origin=%s", self.pool.name, member.url)
        else:
            member.passes, member.failures = 0, member.failures + 1
            member.checks_failed += 1
            if member.healthy and member.failures >= check.unhealthy_threshold:
                member.healthy = False
                log.warning("pool.origin_down pool=%s origin=%s failures=%d", self.pool.name, member.url, member.failures)


async def probe(service: HttpService | UnixService, pool: Pool) -> int:
    """The status of `GET healthCheck.path` on `service`, connected as the pool's rules connect."""
    options = pool.options
    host = options.http_host_header or (service.host if isinstance(service, HttpService) else "localhost")
    head = RequestHead(b"GET", pool.health_check.path.encode(), host.encode())
    stream = await open_origin_stream(service, options, tls_name(service, options, head) if uses_tls(service) else None)
    try:
        request = f"GET {pool.health_check.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: burrow-healthcheck\r\n"
        await stream.send_all((request + "Connection: close\r\n\r\n").encode("latin-1"))
        received = b""
        while b"\r\n" not in received and len(received) < MAX_STATUS_LINE:
            if not (data := await stream.receive_some(MAX_STATUS_LINE)):
                break
            received += data
        if not (status_line := STATUS_LINE.match(received)):
            raise ValueError(f"not an HTTP/1.x status line: {received[:80]!r}")
        return int(status_line[1])
    finally:
        await trio.aclose_forcefully(stream)


class Balancers:
    """The balancer of each pool of the current rules."""

    def __init__(self) -> None:
        self._balancers: dict[str, Balancer] = {}
        self._changed: trio.Event | None = None

    def update(self, pools: Mapping[str, Pool]) -> None:
        """The pools of new rules: unchanged ones keep their balancer (and health)."""
        old = self._balancers
        self._balancers = {
            name: old[name] if name in old and old[name].pool == pool else Balancer(pool) for name, pool in pools.items()
        }
        if self._changed is not None:
            self._changed.set()

    def get(self, name: str) -> Balancer | None:
        return self._balancers.get(name)

    def __iter__(self):
        return iter(list(self._balancers.values()))

    async def run(self) -> None:
        """Run the health checks of every pool that has one, restarting them after each update."""
        while True:
            self._changed = trio.Event()
            async with trio.open_nursery() as nursery:
                for balancer in self._balancers.values():
                    if balancer.pool.health_check is not None:
                        nursery.start_soon(balancer.check_forever)
                await self._changed.wait()
                nursery.cancel_scope.cancel()
