"""The registry's connection, on SQLite or PostgreSQL (`edge.registry.dialect`): opened,
migrated, and used one transaction at a time from any thread."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from edge.registry import schema
from edge.registry.dialect import Dialect, dialect_for
from edge.registry.models import Tunnel
from shared.errors import ConfigError, NotFoundError

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


class Database:
    """One connection behind a lock; safe to share between threads."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self._conn = conn
        self.dialect = dialect
        self._lock = threading.Lock()

    @classmethod
    def open(cls, target: Path | str) -> Self:
        """Open (creating and migrating if needed) the SQLite file at a path, or the PostgreSQL
        database of a `postgresql://` URL."""
        dialect = dialect_for(target)
        conn = dialect.connect()
        try:
            schema.migrate(conn, dialect)
        except BaseException:
            conn.close()
            raise
        return cls(conn, dialect)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self, begin) -> Iterator[Any]:
        with self._lock:
            begin(self._conn)
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self) -> AbstractContextManager[Any]:
        """One read transaction: a consistent view across its queries."""
        return self._transaction(self.dialect.begin_read)

    def _write(self, notify: bool = True) -> AbstractContextManager[Any]:
        """One write transaction, serialised with every other writer, committed on success.
        `notify`: other edges refresh their snapshots when it commits (PostgreSQL)."""
        return self._transaction(lambda conn: self.dialect.begin_write(conn, notify))

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


def live_tunnel(db: Any, account_id: str, name_or_id: str) -> Tunnel:
    """The account's live tunnel with this name or id, read in the caller's transaction."""
    row = db.execute(
        "SELECT id, account_id, name, created_at FROM tunnels "
        "WHERE account_id = ? AND deleted_at IS NULL AND (id = ? OR name = ?)",
        (account_id, name_or_id, name_or_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"tunnel '{name_or_id}' not found")
    return Tunnel(*row)
