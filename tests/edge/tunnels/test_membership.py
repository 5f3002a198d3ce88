"""Edge membership on a shared registry: join, heartbeat, the live set DNS answers with, a
silent edge dropping out (and its connection rows with it), leaving at shutdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.registry import edges as edges_module
from edge.registry.models import Connection
from edge.registry.store import Registry
from edge.tunnels.membership import Membership
from shared.crypto import mint_secret


@pytest.fixture
def shared(tmp_path: Path):
    """Two registry connections to one database, as two edge processes have."""
    a, b = Registry.open(tmp_path / "r.db"), Registry.open(tmp_path / "r.db")
    yield a, b
    a.close()
    b.close()


def member(registry: Registry, name: str, ips: tuple[str, ...], seen: list) -> Membership:
    return Membership(registry, name, f"run-{name}", ips, f"{ips[0]}:7844", lambda: 3, seen.append)


async def test_two_edges_see_each_other_and_a_silent_one_drops_out(shared, monkeypatch) -> None:
    a_registry, b_registry = shared
    seen_a: list = []
    a = member(a_registry, "edge-a", ("198.51.100.2", "2001:db8::2"), seen_a)
    b = member(b_registry, "edge-b", ("198.51.100.1",), [])
    a.join()
    b.join()
    await a.beat()
    assert [edge.name for edge in a.live] == ["edge-a", "edge-b"]
    assert seen_a[-1] == a.addresses == ("198.51.100.1", "198.51.100.2", "2001:db8::2")  # IPv4 first, one order
    assert a.tunnel_endpoints() == ["198.51.100.2:7844", "198.51.100.1:7844"]  # itself first
    assert [(e.name, e.sessions, e.live) for e in a_registry.list_edges()] == [("edge-a", 3, True), ("edge-b", 0, True)]

    account, _ = a_registry.create_account("alice")
    tunnel = a_registry.create_tunnel(account.id, "web", mint_secret())
    for run in ("run-edge-a", "run-edge-b"):
        a_registry.add_connection(Connection(f"c-{run}", tunnel.id, "k", 0, run, "v", "127.0.0.1:1", "now"))
    real_now = edges_module.now_ms
    monkeypatch.setattr(edges_module, "now_ms", lambda: real_now() + 10_000)  # 10 s on: a beats, b is silent
    await a.beat()
    monkeypatch.setattr(edges_module, "now_ms", lambda: real_now() + 20_000)  # 20 s on: b missed its deadline
    await a.beat()
    assert [edge.name for edge in a.live] == ["edge-a"]
    assert seen_a[-1] == ("198.51.100.2", "2001:db8::2")
    assert [c.edge_id for c in a_registry.list_connections(tunnel.id)] == ["run-edge-a"]  # the dead run's row went
    assert [(e.name, e.live) for e in b_registry.list_edges()] == [("edge-a", True), ("edge-b", False)]


async def test_a_restarted_edge_takes_its_name_and_leaving_removes_it(shared) -> None:
    a_registry, b_registry = shared
    old = member(a_registry, "edge-a", ("198.51.100.2",), [])
    old.join()
    new = Membership(b_registry, "edge-a", "run-2", ("198.51.100.3",), "198.51.100.3:7844", lambda: 0)
    new.join()
    assert [(e.run_id, e.public_ips) for e in a_registry.list_edges()] == [("run-2", ("198.51.100.3",))]
    assert not a_registry.edge_heartbeat("edge-a", "run-edge-a", 0)  # the old run no longer owns the row
    new.leave()
    assert a_registry.list_edges() == []
