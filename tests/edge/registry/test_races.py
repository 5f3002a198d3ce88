"""Two edges (two registry connections) race for the same tunnel name and the same hostname:
exactly one wins each round, and the database holds no duplicate row. On both engines."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge.registry.store import Registry
from shared.crypto import mint_secret
from shared.errors import ConflictError

ROUNDS = 100
ZONE = "example.test"


def race(first, second) -> list[object]:
    """Run both at once (a barrier releases them together); what each returned or raised."""
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def run(index: int, work) -> None:
        barrier.wait()
        try:
            outcomes[index] = work()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i, work)) for i, work in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def one_won(outcomes: list[object]) -> bool:
    conflicts = [o for o in outcomes if isinstance(o, ConflictError)]
    return len(conflicts) == 1 and not any(isinstance(o, Exception) and o not in conflicts for o in outcomes)


@pytest.fixture
def edges(registry_target: Path | str):
    """Two registries on the same database, as two edge processes have."""
    a, b = Registry.open(registry_target), Registry.open(registry_target)
    yield a, b
    a.close()
    b.close()


def test_same_tunnel_name_created_on_two_edges(edges) -> None:
    a, b = edges
    account, _ = a.create_account("alice")
    for round_ in range(ROUNDS):
        name = f"race-{round_}"
        outcomes = race(lambda: a.create_tunnel(account.id, name, mint_secret()), lambda: b.create_tunnel(account.id, name, mint_secret()))
        assert one_won(outcomes), outcomes
    rows = a._rows("SELECT name, count(*) FROM tunnels WHERE deleted_at IS NULL GROUP BY name HAVING count(*) > 1")
    assert rows == []
    assert len(a.list_tunnels(account.id)) == ROUNDS


def test_same_hostname_routed_on_two_edges(edges) -> None:
    a, b = edges
    alice, _ = a.create_account("alice")
    bob, _ = b.create_account("bob")
    alices = a.create_tunnel(alice.id, "web", mint_secret())
    bobs = b.create_tunnel(bob.id, "web", mint_secret())
    wins = {alice.id: 0, bob.id: 0}
    for round_ in range(ROUNDS):
        host = f"h{round_}.{ZONE}"
        outcomes = race(lambda: a.route_dns(alice.id, alices.id, host, ZONE), lambda: b.route_dns(bob.id, bobs.id, host, ZONE))
        assert one_won(outcomes), outcomes
        winner = next(o for o in outcomes if not isinstance(o, Exception))
        wins[winner.account_id] += 1
        assert a.zone(ZONE).tunnel_for(host) == winner.tunnel_id
    assert sum(wins.values()) == ROUNDS
    assert a._rows("SELECT count(*) FROM records") == [(ROUNDS,)]


def test_the_database_itself_refuses_a_second_live_tunnel_name(registry: Registry) -> None:
    """The unique index backs the check: a duplicate that skipped it is refused by the engine."""
    account, _ = registry.create_account("alice")
    tunnel = registry.create_tunnel(account.id, "web", mint_secret())
    with pytest.raises(Exception, match="(?i)unique"):
        with registry._write() as db:
            db.execute(
                "INSERT INTO tunnels (id, account_id, name, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                ("other", account.id, tunnel.name, "x", tunnel.created_at),
            )
    assert [t.id for t in registry.list_tunnels(account.id)] == [tunnel.id]
