"""The registry's SQLite connection: opened with WAL and `synchronous=FULL`, migrated, and
used one transaction at a time from any thread."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from edge.registry import schema
from edge.registry.models import Tunnel
from shared.errors import ConfigError, NotFoundError

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
BUSY_TIMEOUT_S = 10.0


class Database:
    """One SQLite database behind a lock; safe to share between threads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> Self:
        """Open (creating if needed) the database at `path`."""
        Path(path).touch(mode=0o600, exist_ok=True)  # holds secret hashes: never world-readable
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        try:
            schema.migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute(begin)
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        """One read transaction: a consistent view across its queries."""
        return self._transaction("BEGIN")

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One immediate transaction, committed on success."""
        return self._transaction("BEGIN IMMEDIATE")

    def _rows(self, query: str, parameters: tuple = ()) -> list[tuple]:
        """Every row one query returns, read in a transaction of its own."""
        with self._read() as db:
            return db.execute(query, parameters).fetchall()


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(
            f"invalid {kind} name {name!r}: use 1-64 of a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return name


def live_tunnel(db: sqlite3.Connection, account_id: str, name_or_id: str) -> Tunnel:
    """The account's live tunnel with this name or id, read in the caller's transaction."""
    row = db.execute(
        "SELECT id, account_id, name, created_at FROM tunnels "
        "WHERE account_id = ? AND deleted_at IS NULL AND (id = ? OR name = ?)",
        (account_id, name_or_id, name_or_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"tunnel '{name_or_id}' not found")
    return Tunnel(*row)
