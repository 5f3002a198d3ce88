"""The change feed on a real PostgreSQL: a write on one edge wakes the others; connection rows
(notify=False) do not; an edge joining or leaving does, and the others' live sets follow it;
a feed whose connection was killed listens again and catches up."""

from __future__ import annotations

import psycopg
import pytest
import trio

from edge.registry import changes
from edge.registry.changes import ChangeFeed
from edge.registry.models import Connection
from edge.registry.store import Registry
from edge.tunnels.membership import Membership
from shared.crypto import mint_secret

ZONE = "example.test"


@pytest.fixture
def two_edges(pg_url: str):
    a, c = Registry.open(pg_url), Registry.open(pg_url)
    yield a, c
    a.close()
    c.close()


class Woken:
    def __init__(self) -> None:
        self.count = 0
        self.event = trio.Event()

    async def __call__(self) -> None:
        self.count += 1
        self.event.set()

    async def wait(self) -> None:
        with trio.fail_after(10):
            await self.event.wait()
        self.event = trio.Event()


async def test_a_route_written_on_one_edge_wakes_the_other(two_edges) -> None:
    a, c = two_edges
    account, _ = a.create_account("alice")
    tunnel = a.create_tunnel(account.id, "web", mint_secret())
    woken = Woken()
    async with trio.open_nursery() as nursery:
        await nursery.start(ChangeFeed(c.dialect, woken).run)
        await trio.to_thread.run_sync(a.route_dns, account.id, tunnel.id, "app.example.test", ZONE)
        await woken.wait()
        assert c.zone(ZONE).tunnel_for("app.example.test") == tunnel.id
        connection = Connection("c1", tunnel.id, "k", 0, "edge-a", "v", "127.0.0.1", "now")
        await trio.to_thread.run_sync(a.add_connection, connection)  # not a snapshot change
        await trio.to_thread.run_sync(a.remove_route, account.id, "app.example.test")
        await woken.wait()
        assert woken.count == 2
        nursery.cancel_scope.cancel()


async def test_an_edge_joining_or_leaving_wakes_the_others_and_their_live_set_follows(two_edges) -> None:
    a, c = two_edges
    edge_c = Membership(c, "edge-c", "run-c", ("127.0.0.13",), "127.0.0.13:7844", lambda: 0)
    await trio.to_thread.run_sync(edge_c.join)
    woken = Woken()
    async with trio.open_nursery() as nursery:
        await nursery.start(ChangeFeed(c.dialect, woken).run)
        edge_a = Membership(a, "edge-a", "run-a", ("127.0.0.11",), "127.0.0.11:7844", lambda: 0)
        await trio.to_thread.run_sync(edge_a.join)
        await woken.wait()  # not edge-c's next heartbeat, seconds later
        await edge_c.refresh()
        assert edge_c.tunnel_endpoints() == ["127.0.0.13:7844", "127.0.0.11:7844"]
        await edge_a.beat()  # a heartbeat is not news
        await trio.to_thread.run_sync(edge_a.leave)
        await woken.wait()
        assert woken.count == 2
        await edge_c.refresh()
        assert edge_c.tunnel_endpoints() == ["127.0.0.13:7844"]
        nursery.cancel_scope.cancel()


async def test_a_killed_feed_listens_again_and_catches_up(two_edges, pg_url: str, monkeypatch) -> None:
    monkeypatch.setattr(changes, "RECONNECT_DELAY", 0.1)
    a, c = two_edges
    account, _ = a.create_account("alice")
    tunnel = a.create_tunnel(account.id, "web", mint_secret())
    woken = Woken()
    async with trio.open_nursery() as nursery:
        await nursery.start(ChangeFeed(c.dialect, woken).run)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            ).fetchall()
        assert killed == [(True,)]
        await woken.wait()  # the catch-up refresh after listening again
        await trio.to_thread.run_sync(a.route_dns, account.id, tunnel.id, "app.example.test", ZONE)
        await woken.wait()
        nursery.cancel_scope.cancel()
