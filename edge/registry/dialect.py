"""The registry's two engines behind one small interface: SQLite (one edge, a file in its home)
and PostgreSQL (several edges sharing one registry, through psycopg 3's blocking API).

The registry's SQL is written once, portable, with `?` placeholders. A dialect opens the
connection, rewrites placeholders, begins read and write transactions and keeps the schema
version. Writes are serialised the same way on both: SQLite's `BEGIN IMMEDIATE` takes the
database's write lock; on PostgreSQL every write transaction first takes one transaction-level
advisory lock, so a check-then-insert sees every write committed before it (READ COMMITTED
reads afresh per statement) and two edges cannot both pass the check.
"""

from __future__ import annotations

import re
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from shared.edge_config import redact_url, validate_database_url
from shared.errors import ConfigError

BUSY_TIMEOUT_S = 10.0
PG_CONNECT_TIMEOUT_S = 10
PG_WRITE_LOCK = 0x62757272  # "burr": the advisory lock every write transaction holds
PG_STATEMENT_TIMEOUT_MS = 30_000  # a statement (or the wait for the write lock) longer than this fails
CHANGES_CHANNEL = "burrow_registry"  # NOTIFY channel of writes other edges must see (edge.registry.changes)
URL_SCHEMES = ("postgresql://", "postgres://")


class Dialect(Protocol):
    name: str
    target: str  # where the registry is, safe to show (no password)

    def connect(self) -> Any: ...
    def begin_read(self, conn: Any) -> None: ...
    def begin_write(self, conn: Any, notify: bool) -> None: ...
    def version(self, conn: Any) -> int: ...
    def set_version(self, conn: Any, version: int) -> None: ...


def is_database_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


def dialect_for(target: str | Path) -> Dialect:
    """PostgreSQL for a `postgresql://` URL, else SQLite at the path."""
    if is_database_url(target):
        return PostgresDialect(str(target))
    return SqliteDialect(Path(target))


class SqliteDialect:
    """One file, WAL, `synchronous=FULL`; the version in `PRAGMA user_version`."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.target = str(path)

    def connect(self) -> sqlite3.Connection:
        self.path.touch(mode=0o600, exist_ok=True)  # holds secret hashes: never world-readable
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def begin_read(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")

    def begin_write(self, conn: sqlite3.Connection, notify: bool) -> None:
        conn.execute("BEGIN IMMEDIATE")  # one process's edge: it polls, nothing to notify

    def version(self, conn: sqlite3.Connection) -> int:
        return conn.execute("PRAGMA user_version").fetchone()[0]

    def set_version(self, conn: sqlite3.Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")


class PostgresDialect:
    """A server shared by every edge; the version in the one-row table `schema_version`."""

    name = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = validate_database_url(url)
        self.target = redact_url(self.url)

    def connect(self, **options: Any) -> PgConnection:
        import psycopg  # only an edge on PostgreSQL needs the driver loaded

        try:
            conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S,
                options=f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}", application_name="burrow-edge", **options,
            )
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot connect to the registry database {self.target}: {reason}") from None
        return PgConnection(conn)

    def begin_read(self, conn: PgConnection) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")  # one snapshot across the queries

    def begin_write(self, conn: PgConnection, notify: bool) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (PG_WRITE_LOCK,))
        if notify:  # delivered at COMMIT only, once per transaction
            conn.execute(f"NOTIFY {CHANGES_CHANNEL}")

    def version(self, conn: PgConnection) -> int:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0

    def set_version(self, conn: PgConnection, version: int) -> None:
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))


class PgConnection:
    """A psycopg connection (autocommit: transactions are begun explicitly) that takes `?` placeholders."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, query: str, parameters: tuple = ()) -> Any:
        if not parameters:
            return self.raw.execute(query)
        return self.raw.execute(_pyformat(query), parameters)

    def close(self) -> None:
        self.raw.close()


@lru_cache(maxsize=512)
def _pyformat(query: str) -> str:
    """`?` → `%s` (the registry's SQL has no `?` inside literals); a literal `%` is doubled."""
    return re.sub(r"\?", "%s", query.replace("%", "%%"))
