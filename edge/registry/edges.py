"""The edges sharing a registry: each registers itself (name, public addresses, tunnel endpoint)
and beats every `HEARTBEAT_INTERVAL`; one silent for `DEAD_AFTER` is no longer live: it leaves
the DNS answers, the lists connectors get, and its connection rows may be cleaned."""

from __future__ import annotations

import json
import time

from edge.registry.database import Database, timestamp
from edge.registry.models import EdgeInfo

HEARTBEAT_INTERVAL = 5.0  # seconds between an edge's heartbeats
DEAD_AFTER = 15.0  # an edge whose last heartbeat is older is not live


def now_ms() -> int:
    return int(time.time() * 1000)


def live_since() -> int:
    return now_ms() - int(DEAD_AFTER * 1000)


EDGE_COLUMNS = "name, run_id, public_ips, tunnel_endpoint, started_at, heartbeat_at, sessions"


def _edge(row: tuple) -> EdgeInfo:
    name, run_id, ips, endpoint, started_at, heartbeat_at, sessions = row
    return EdgeInfo(name, run_id, tuple(json.loads(ips)), endpoint, started_at, heartbeat_at, sessions, heartbeat_at >= live_since())


class EdgeStore(Database):
    """Edge membership rows; an edge name belongs to the run that registered it last."""

    def register_edge(self, name: str, run_id: str, public_ips: tuple[str, ...], tunnel_endpoint: str) -> None:
        """This run of the edge joins; the other edges hear of it at once (the change feed)."""
        with self._write() as db:
            db.execute(
                f"INSERT INTO edges ({EDGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (name) DO UPDATE SET "
                "run_id = excluded.run_id, public_ips = excluded.public_ips, tunnel_endpoint = excluded.tunnel_endpoint, "
                "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, sessions = 0",
                (name, run_id, json.dumps(list(public_ips)), tunnel_endpoint, timestamp(), now_ms()),
            )

    def edge_heartbeat(self, name: str, run_id: str, sessions: int) -> bool:
        """Mark this run of the edge alive; False if another run took the name (or the row is gone)."""
        with self._write(notify=False) as db:
            cur = db.execute(
                "UPDATE edges SET heartbeat_at = ?, sessions = ? WHERE name = ? AND run_id = ?",
                (now_ms(), sessions, name, run_id),
            )
            return cur.rowcount == 1

    def remove_edge(self, name: str, run_id: str) -> None:
        """This run of the edge stops: it leaves the live set at once, with its connection rows."""
        with self._write() as db:
            db.execute("DELETE FROM edges WHERE name = ? AND run_id = ?", (name, run_id))
            db.execute("DELETE FROM connections WHERE edge_id = ?", (run_id,))

    def list_edges(self) -> list[EdgeInfo]:
        """Every edge row, live or not, by name."""
        return [_edge(row) for row in self._rows(f"SELECT {EDGE_COLUMNS} FROM edges ORDER BY name")]

    def live_edges(self) -> list[EdgeInfo]:
        """The edges that beat within `DEAD_AFTER`, by name."""
        rows = self._rows(f"SELECT {EDGE_COLUMNS} FROM edges WHERE heartbeat_at >= ? ORDER BY name", (live_since(),))
        return [_edge(row) for row in rows]
