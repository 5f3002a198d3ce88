"""The connector's answer to `status` streams (connector/tunnel/status.py) through a real
tunnel pair, and the edge asking each connector of a tunnel (edge/admin/connector_pools.py)."""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from connector.ingress.rules import Ingress
from edge.admin.connector_pools import TOO_OLD, ask, connector_pools
from edge.dns.zone import Zones
from edge.routing.router import Router
from shared import protocol
from shared.events import RequestHead
from shared.registration import FEATURE_PORTS, FEATURE_STATUS
from shared.transport import TunnelConnection
from tests.connector.tunnel_pair import start

POOLS = {
    "web": {"origins": ["http://127.0.0.1:9001", "http://127.0.0.1:9002"], "policy": "least_requests",
            "healthCheck": {"path": "/health", "interval": "10s"}},
    "plain": {"origins": ["http://127.0.0.1:9003"]},
}


async def pooled(nursery) -> tuple[TunnelConnection, object]:
    edge, server, _ = await start(nursery, [{"service": "http_status:404"}])
    server.ingress = Ingress.from_rules([{"hostname": "web.test", "service": "pool:web"}, {"service": "pool:plain"}], None, "config.yml", POOLS)
    return edge, server


async def test_the_connector_reports_each_pool_and_origin():
    async with trio.open_nursery() as nursery:
        edge, server = await pooled(nursery)
        web = server.balancers.get("web")
        for _ in range(3):  # unhealthyThreshold (default 3) failed checks
            web.record(web.members[1], False)
        web.members[0].in_flight = 2
        report = await ask(edge)
        nursery.cancel_scope.cancel()
    assert [(p.name, p.policy, p.checked) for p in report.pools] == [("web", "least_requests", True), ("plain", "round_robin", False)]
    first, second = report.pools[0].origins
    assert (first.url, first.healthy, first.in_flight, first.last_check, first.checked_at) == ("http://127.0.0.1:9001", True, 2, None, None)
    assert (second.healthy, second.last_check, second.checks_failed) == (False, False, 3) and second.checked_at > 1.7e9
    assert not report.truncated


async def test_another_status_target_is_404():
    async with trio.open_nursery() as nursery:
        edge, _ = await pooled(nursery)
        head = RequestHead(b"GET", b"/secrets", b"", b"https")
        async with await edge.open_stream(head, protocol.KIND_STATUS) as stream:
            status = (await stream.receive_response()).status
        nursery.cancel_scope.cancel()
    assert status == 404


async def test_the_edge_asks_each_connector_once_and_names_the_old_and_the_silent():
    async with trio.open_nursery() as nursery:
        answering, _ = await pooled(nursery)
        also_answering, _ = await pooled(nursery)
        silent_side, _peer = trio.testing.memory_stream_pair()  # registered the feature, never answers
        silent = TunnelConnection(silent_side, protocol.TunnelSession("edge"))
        old, _ = await pooled(nursery)  # a connector that did not register the feature
        router = Router(Zones({}))
        for conn, connector, features in [
            (answering, "c-new", {FEATURE_STATUS, FEATURE_PORTS}), (also_answering, "c-new", {FEATURE_STATUS}),
            (silent, "c-silent", {FEATURE_STATUS}), (old, "c-old", {FEATURE_PORTS}),
        ]:
            router.add("t1", conn, SimpleNamespace(connector_id=connector), frozenset(features))
        started = trio.current_time()
        answers = await connector_pools(router, "t1", timeout=0.5)
        waited = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert [a.connector_id for a in answers] == ["c-new", "c-silent", "c-old"]
    assert [p.name for p in answers[0].report.pools] == ["web", "plain"]
    assert answers[1].report is None and answers[1].error == "no answer within 0.5 s"
    assert answers[2].report is None and answers[2].error == TOO_OLD
    assert waited < 1.0  # all at once: the silent one's timeout, not the sum
    assert answering.active_streams == also_answering.active_streams == 0  # one stream, finished both ways
