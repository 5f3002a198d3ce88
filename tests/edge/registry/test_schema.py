"""Registry migrations: from an empty file and from the issue-2 schema, one transaction per step."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest

from edge.registry import schema
from edge.registry.store import Registry
from shared.crypto import hash_secret
from shared.errors import ConfigError

# The schema issue 2 shipped (no version number: user_version 0).
ISSUE_2_SCHEMA = """
CREATE TABLE accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE tunnels (id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(id), name TEXT NOT NULL,
    secret_hash TEXT NOT NULL, created_at TEXT NOT NULL, deleted_at TEXT);
CREATE UNIQUE INDEX tunnels_live_name ON tunnels(account_id, name) WHERE deleted_at IS NULL;
CREATE TABLE records (hostname TEXT PRIMARY KEY, type TEXT NOT NULL CHECK (type = 'CNAME'), target TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id), tunnel_id TEXT NOT NULL REFERENCES tunnels(id),
    created_at TEXT NOT NULL);
INSERT INTO accounts VALUES ('a1', 'alice', 'h', '2025-01-01T00:00:00+00:00', NULL);
INSERT INTO tunnels VALUES ('t1', 'a1', 'web', '%s', '2025-01-01T00:00:00+00:00', NULL);
INSERT INTO records VALUES ('app.example.test', 'CNAME', 't1.tunnels.example.test', 'a1', 't1', '2025-01-01');
""" % hash_secret(b"s" * 32)


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def test_empty_database_gets_every_step(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path / "r.db")
    assert registry._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert registry._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    registry.close()
    assert user_version(tmp_path / "r.db") == schema.LATEST
    assert {"accounts", "tunnels", "records", "connections", "txt_records", "ip_routes", "network_policies", "port_routes"} <= tables(
        tmp_path / "r.db"
    )


def test_issue_2_database_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with sqlite3.connect(path) as db:
        db.executescript(ISSUE_2_SCHEMA)
    assert user_version(path) == 0
    registry = Registry.open(path)
    try:
        assert registry.verify_tunnel("t1", b"s" * 32).name == "web"
        assert registry.zone("example.test").cname("app.example.test") == "t1.tunnels.example.test"
        assert registry.list_connections("t1") == []
        assert [r.hostname for r in registry.routes("a1")] == ["app.example.test"]
    finally:
        registry.close()
    assert user_version(path) == schema.LATEST
    Registry.open(path).close()  # opening again is a no-op
    assert user_version(path) == schema.LATEST


def test_a_failing_step_leaves_the_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.db"
    broken = (schema.MIGRATIONS[0], ("CREATE TABLE half (x)", "THIS IS NOT SQL"))
    monkeypatch.setattr(schema, "MIGRATIONS", broken)
    monkeypatch.setattr(schema, "LATEST", 2)
    with pytest.raises(sqlite3.OperationalError):
        Registry.open(path)
    assert user_version(path) == 1
    assert "half" not in tables(path)  # the step's first statement was rolled back with it


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    with pytest.raises(ConfigError, match="newer than this program"):
        Registry.open(path)


def pg_version(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version FROM schema_version").fetchone()[0]


def pg_tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()
    return {name for (name,) in rows}


def test_postgresql_empty_database_gets_every_step(pg_url: str) -> None:
    Registry.open(pg_url).close()
    assert pg_version(pg_url) == schema.LATEST
    assert {"accounts", "tunnels", "records", "connections", "txt_records", "schema_version"} <= pg_tables(pg_url)
    Registry.open(pg_url).close()  # opening again is a no-op
    assert pg_version(pg_url) == schema.LATEST


def test_postgresql_edges_opening_at_once_migrate_once(pg_url: str) -> None:
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            Registry.open(pg_url).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
    assert pg_version(pg_url) == schema.LATEST


def test_postgresql_failing_step_leaves_the_previous_version(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = (schema.MIGRATIONS[0], ("CREATE TABLE half (x TEXT)", "THIS IS NOT SQL"))
    monkeypatch.setattr(schema, "MIGRATIONS", broken)
    monkeypatch.setattr(schema, "LATEST", 2)
    with pytest.raises(psycopg.errors.SyntaxError):
        Registry.open(pg_url)
    assert pg_version(pg_url) == 1
    assert "half" not in pg_tables(pg_url)  # DDL is transactional: rolled back with the step


def test_postgresql_newer_database_is_refused(pg_url: str) -> None:
    Registry.open(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (schema.LATEST + 1,))
    with pytest.raises(ConfigError, match="newer than this program"):
        Registry.open(pg_url)


def test_postgresql_unreachable_is_one_clear_error(pg_server) -> None:
    url = pg_server.url("no_such_database")
    with pytest.raises(ConfigError, match="cannot connect to the registry database .*no_such_database"):
        Registry.open(url)
