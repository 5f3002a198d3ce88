"""`burrow-edge init --database postgresql://…` (or BURROW_DATABASE_URL): two edge homes share one
PostgreSQL registry through the CLI; a bad URL is one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.cli import app
from shared.edge_config import load_edge_config

ZONE = "example.test"


def init(home: Path, *extra: str, env: dict | None = None):
    args = ["init", "--home", str(home), "--zone", ZONE, "--public-ip", "127.0.0.1", *extra]
    return CliRunner().invoke(app, args, env=env)


def test_two_edges_share_one_postgresql_registry(tmp_path: Path, pg_url: str) -> None:
    assert init(tmp_path / "a", "--database", pg_url, "--edge-name", "edge-a").exit_code == 0
    assert init(tmp_path / "c", env={"BURROW_DATABASE_URL": pg_url}).exit_code == 0
    cfg = load_edge_config(tmp_path / "a")
    assert (cfg.database, cfg.name) == (pg_url, "edge-a")
    assert not (tmp_path / "a" / "registry.db").exists()  # nothing on SQLite
    runner = CliRunner()
    created = runner.invoke(app, ["account", "create", "alice", "--home", str(tmp_path / "a")])
    assert created.exit_code == 0, created.output
    listed = runner.invoke(app, ["account", "list", "--home", str(tmp_path / "c"), "--output", "json"])
    assert listed.exit_code == 0 and '"alice"' in listed.output, listed.output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "invalid database URL"),
        ("postgresql://u@h/", "invalid database URL"),
        ("postgresql://u:hunter2@h", "postgresql://u:\\*\\*\\*@h"),
    ],
)
def test_bad_database_url_is_one_line_without_the_password(tmp_path: Path, url: str, message: str) -> None:
    result = init(tmp_path / "e", "--database", url)
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "hunter2" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert re.search(message, result.output), result.output
    assert not (tmp_path / "e" / "edge.yml").exists()


def test_unreachable_database_is_one_line(tmp_path: Path, pg_server) -> None:
    result = init(tmp_path / "e", "--database", pg_server.url("missing_db"))
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "cannot connect to the registry database" in result.output, result.output
    assert not (tmp_path / "e" / "edge.yml").exists()
