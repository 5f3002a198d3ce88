"""connector/origins/balancer.py: the policies, the health thresholds, retrying a request
that could not connect, health probes against real sockets, and pools through StreamServer."""

from __future__ import annotations

import functools
from collections import Counter

import pytest
import trio

from connector.ingress.pools import HealthCheck, Pool
from connector.ingress.rules import Ingress
from connector.ingress.services import HttpService
from connector.origins.balancer import Balancer, Balancers, probe
from connector.origins.errors import NoHealthyOrigin, OriginClosed, OriginRefused
from shared.events import RequestHead
from tests.connector.tunnel_pair import fetch, start
from tests.e2e.conftest import free_port

ORIGINS = tuple(HttpService("http", "127.0.0.1", port) for port in (9001, 9002, 9003))
CHECK = HealthCheck(interval=0.05, timeout=0.05, healthy_threshold=2, unhealthy_threshold=3)


def balancer(policy: str = "round_robin", check: HealthCheck | None = CHECK) -> Balancer:
    return Balancer(Pool("web", ORIGINS, policy, check))


def test_round_robin_takes_turns_among_healthy_origins():
    pool = balancer()
    assert Counter(pool.pick([]).service.port for _ in range(30)) == {9001: 10, 9002: 10, 9003: 10}
    pool.members[1].healthy = False
    assert {pool.pick([]).service.port for _ in range(10)} == {9001, 9003}
    assert pool.pick(pool.members[:1]).service.port == 9003


def test_least_requests_takes_the_least_busy_then_the_least_used():
    pool = balancer("least_requests")
    pool.members[0].in_flight, pool.members[1].in_flight, pool.members[2].in_flight = 2, 0, 1
    assert pool.pick([]) is pool.members[1]
    pool.members[1].in_flight = 1
    pool.members[2].requests = 5
    assert pool.pick([]) is pool.members[1]


def test_random_only_picks_healthy_origins():
    pool = balancer("random")
    pool.members[0].healthy = pool.members[2].healthy = False
    assert {pool.pick([]).service.port for _ in range(20)} == {9002}
    assert pool.pick(pool.members[1:2]) is None


def test_thresholds():
    pool = balancer()
    member = pool.members[0]
    for passed, healthy in [(False, True), (False, True), (True, True), (False, True), (False, True), (False, False),
                            (True, False), (False, False), (True, False), (True, True)]:
        pool.record(member, passed)
        assert member.healthy is healthy
    assert member.checks_failed == 6


class Stream:
    """What Balancer.forward reads of a tunnel stream."""

    def __init__(self, method: bytes = b"GET", has_body: bool = False) -> None:
        self.head = RequestHead(method, b"/", b"app.test", has_body=has_body)
        self.response_sent = False


async def test_a_request_that_could_not_connect_goes_to_the_next_origin():
    pool = balancer()
    tried = []

    async def attempt(origin):
        tried.append(origin.port)
        if len(tried) < 3:
            raise OriginRefused("refused")

    await pool.forward(Stream(), attempt)
    assert len(set(tried)) == 3 and pool.retries == 2
    assert [member.in_flight for member in pool.members] == [0, 0, 0]


@pytest.mark.parametrize(
    "stream, error",
    [
        (Stream(b"POST"), OriginRefused("refused")),  # not idempotent
        (Stream(b"PUT", has_body=True), OriginRefused("refused")),  # its body may be gone
        (Stream(), OriginClosed("closed mid-response")),  # it did connect
    ],
)
async def test_other_requests_and_failures_are_not_sent_again(stream, error):
    pool = balancer()
    calls = []

    async def attempt(origin):
        calls.append(origin)
        raise error

    with pytest.raises(type(error)):
        await pool.forward(stream, attempt)
    assert len(calls) == 1 and pool.retries == 0


async def test_no_healthy_origin():
    pool = balancer()
    for member in pool.members:
        member.healthy = False
    with pytest.raises(NoHealthyOrigin, match="pool web: none of its 3 origins is healthy"):
        await pool.forward(Stream(), None)


async def http_origin(nursery, answer: bytes) -> int:
    async def handle(stream):
        await stream.receive_some(4096)
        await stream.send_all(answer)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


async def test_probe_reads_the_status_and_health_checks_take_origins_out_and_back():
    async with trio.open_nursery() as nursery:
        port = await http_origin(nursery, b"HTTP/1.1 204 No Content\r\n\r\n")
        up, down = HttpService("http", "127.0.0.1", port), HttpService("http", "127.0.0.1", free_port())
        pool = Pool("web", (up, down), health_check=CHECK)
        assert await probe(up, pool) == 204
        balancers = Balancers()
        balancers.update({"web": pool})
        nursery.start_soon(balancers.run)
        web = balancers.get("web")
        with trio.fail_after(5):
            while web.members[1].healthy:
                await trio.sleep(0.01)
        assert web.members[0].healthy and web.members[0].passes >= 2
        balancers.update({"web": pool})  # unchanged: the same balancer, health kept
        assert balancers.get("web") is web
        balancers.update({"web": Pool("web", (down, up), health_check=CHECK)})
        assert balancers.get("web") is not web and all(member.healthy for member in balancers.get("web").members)
        nursery.cancel_scope.cancel()


async def test_probe_refuses_what_is_not_http():
    async with trio.open_nursery() as nursery:
        port = await http_origin(nursery, b"SSH-2.0-OpenSSH\r\n")
        with pytest.raises(ValueError, match="not an HTTP/1.x status line"):
            await probe(HttpService("http", "127.0.0.1", port), Pool("web", (), health_check=CHECK))
        nursery.cancel_scope.cancel()


async def test_a_pool_rule_through_stream_server_skips_a_dead_origin_and_reports_its_state():
    async with trio.open_nursery() as nursery:
        port = await http_origin(nursery, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        pools = {"web": {"origins": [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{port}"]}}
        ingress = Ingress.from_rules([{"service": "pool:web"}], None, "config.yml", pools)
        edge, server, metrics = await start(nursery, [{"service": "http_status:404"}])
        server.ingress = ingress
        head = RequestHead(b"GET", b"/", b"app.test", headers=((b"host", b"app.test"),))
        assert [await fetch(edge, head) for _ in range(4)] == [(200, b"ok")] * 4
        post = RequestHead(b"POST", b"/", b"app.test", headers=((b"host", b"app.test"),))
        statuses = [(await fetch(edge, post))[0] for _ in range(2)]
        nursery.cancel_scope.cancel()
    assert sorted(statuses) == [200, 502]  # round robin: one POST meets the dead origin, and is not sent again
    good, dead = ({"pool": "web", "origin": origin} for origin in (f"http://127.0.0.1:{port}", pools["web"]["origins"][0]))
    sample = metrics.registry.get_sample_value
    assert sample("burrow_connector_pool_origin_requests_total", good) == 5  # 4 GETs, 1 POST
    retries = sample("burrow_connector_pool_retries_total", {"pool": "web"})
    assert retries >= 1 and sample("burrow_connector_pool_origin_requests_total", dead) == retries + 1
    assert sample("burrow_connector_pool_origin_healthy", good) == 1 and sample("burrow_connector_pool_origin_in_flight", good) == 0
