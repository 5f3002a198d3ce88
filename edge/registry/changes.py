"""The change feed: wakes an edge when another edge committed a write its snapshots depend on.

On PostgreSQL every such write transaction sends `NOTIFY burrow_registry` (delivered at commit,
see `dialect.PostgresDialect.begin_write`); each edge LISTENs on a connection of its own and
waits for it with trio (no thread), so a route added on one edge reaches every edge's DNS and
router within one snapshot read. A lost connection is re-opened after `RECONNECT_DELAY`, with a
refresh for what was missed meanwhile. SQLite has one edge: it has no feed (the edge polls).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from edge.registry.dialect import CHANGES_CHANNEL, PostgresDialect

log = logging.getLogger(__name__)

RECONNECT_DELAY = 1.0


class ChangeFeed:
    """LISTEN for other edges' writes and call `on_change` (coalesced: once per wake-up)."""

    def __init__(self, dialect: PostgresDialect, on_change: Callable[[], Awaitable[None]]) -> None:
        self.dialect = dialect
        self.on_change = on_change

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; `started()` once the LISTEN is in place (raises if it cannot be)."""
        conn = await trio.to_thread.run_sync(self._open)
        task_status.started()
        missed = False
        while True:
            try:
                if missed:
                    await self.on_change()  # what was written while the feed was down
                await self._listen(conn.raw.pgconn)
            except Exception as exc:  # the server went away: listen again
                log.warning("registry.changes_lost error=%s", exc)
            finally:
                conn.close()
            while True:
                await trio.sleep(RECONNECT_DELAY)
                try:
                    conn = await trio.to_thread.run_sync(self._open)
                    break
                except Exception as exc:
                    log.warning("registry.changes_unavailable error=%s", exc)
            missed = True

    def _open(self):
        conn = self.dialect.connect()
        conn.execute(f"LISTEN {CHANGES_CHANNEL}")
        return conn

    async def _listen(self, pgconn) -> None:
        while True:
            await trio.lowlevel.wait_readable(pgconn.socket)
            pgconn.consume_input()  # raises when the connection broke
            changed = False
            while pgconn.notifies() is not None:
                changed = True
            if changed:
                await self.on_change()
