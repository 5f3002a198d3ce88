"""The registry tests run on both engines: SQLite (a file) and PostgreSQL (a real server, `tests.pg`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.registry.store import Registry
from tests.pg import pg_database, pg_server, pg_url  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request) -> str:
    return request.param


@pytest.fixture
def registry_target(engine: str, tmp_path: Path, request) -> Path | str:
    """Where a fresh registry goes: a file, or an empty PostgreSQL database."""
    if engine == "sqlite":
        return tmp_path / "edge.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def registry(registry_target: Path | str):
    reg = Registry.open(registry_target)
    yield reg
    reg.close()
