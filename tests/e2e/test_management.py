"""Issue 3 acceptance: tunnel list/info/delete/cleanup/token through the real CLIs, with curl."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import ZONE, start_origin, wait_until


def one_line_error(result, message: str, code: int) -> None:
    assert result.returncode == code, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.fixture(scope="module")
def mgr(edge):
    env = edge.login("mgr")
    origin, port = start_origin(edge.tmp, env)
    edge.procs.append(origin)
    return env, port


def run_connector(edge, env: dict, name: str, port: int, *extra):
    config = Path(env["BURROW_HOME"]) / f"{name}.yml"
    config.write_text(
        f"tunnel: {name}\ningress:\n  - hostname: {name}.{ZONE}\n    service: http://127.0.0.1:{port}\n"
        "  - service: http_status:404\n"
    )
    proc = edge.start(["burrow", "tunnel", "run", "--config", config, *extra], f"connector-{name}", env)
    proc.wait_for_log(r"tunnel\.registered index=", count=4)
    return proc


def test_list_table_json_yaml(edge, mgr):
    env, _ = mgr
    ids = {name: edge.cli("burrow", "tunnel", "create", name, env=env).stdout.strip() for name in ("alpha", "beta")}
    edge.cli("burrow", "tunnel", "route", "dns", "alpha", f"alpha.{ZONE}", env=env)
    edge.cli("burrow", "tunnel", "route", "dns", "alpha", f"*.alpha.{ZONE}", env=env)

    lines = edge.cli("burrow", "tunnel", "list", env=env).stdout.splitlines()
    assert lines[0].split() == ["NAME", "ID", "CREATED", "CONNECTIONS", "HOSTNAMES"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["alpha"][1] == ids["alpha"] and rows["alpha"][3:] == ["0", f"*.alpha.{ZONE},alpha.{ZONE}"]
    assert rows["beta"][3:] == ["0", "-"]

    as_json = json.loads(edge.cli("burrow", "tunnel", "list", "--output", "json", env=env).stdout)
    as_yaml = yaml.safe_load(edge.cli("burrow", "tunnel", "list", "-o", "yaml", env=env).stdout)
    assert as_json == as_yaml
    assert {t["name"]: t["id"] for t in as_json} == ids
    assert next(t for t in as_json if t["name"] == "alpha")["hostnames"] == [f"*.alpha.{ZONE}", f"alpha.{ZONE}"]
    one_line_error(edge.cli("burrow", "tunnel", "list", "-o", "xml", env=env, check=False), "--output must be one of", 2)


def test_info_shows_the_connectors_four_connections(edge, mgr):
    env, port = mgr
    connector = run_connector(edge, env, "alpha", port)
    text = edge.cli("burrow", "tunnel", "info", "alpha", env=env).stdout
    assert "NAME:       alpha" in text and f"HOSTNAMES:  *.alpha.{ZONE}, alpha.{ZONE}" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("CONNECTOR ID"))
    [row] = lines[header + 1:]
    fields = row.split()
    assert fields[1].startswith("burrow/") and fields[2] == "127.0.0.1" and fields[3] == "0,1,2,3"

    data = json.loads(edge.cli("burrow", "tunnel", "info", "alpha", "-o", "json", env=env).stdout)
    [connector_info] = data["connectors"]
    assert connector_info["connections"] == [0, 1, 2, 3]
    assert connector_info["sources"] == ["127.0.0.1"] and len(connector_info["edges"]) == 1
    assert data["stale"] == 0
    listed = {t["name"]: t for t in json.loads(edge.cli("burrow", "tunnel", "list", "-o", "json", env=env).stdout)}
    assert listed["alpha"]["connections"] == 4
    edge.connector_alpha = connector  # the next test deletes this running tunnel


def test_delete_refused_while_live_then_forced(edge, mgr, tmp_path):
    env, _ = mgr
    connector = edge.connector_alpha
    home = Path(env["BURROW_HOME"])
    creds = home / "alpha" / "credentials.json"
    saved = tmp_path / "alpha.json"
    shutil.copy(creds, saved)
    assert edge.curl(f"alpha.{ZONE}", "/before").returncode == 0

    one_line_error(edge.cli("burrow", "tunnel", "delete", "alpha", env=env, check=False),
                   "tunnel 'alpha' has 4 live connections; use --force", 1)
    assert creds.exists()
    assert b'"method": "GET"' in edge.curl(f"alpha.{ZONE}", "/still").stdout

    result = edge.cli("burrow", "tunnel", "delete", "alpha", "--force", env=env)
    assert "Deleted tunnel alpha" in result.stdout and "Closed 4 live connection(s)" in result.stdout
    assert not creds.exists() and not creds.parent.exists()
    # The route went with the tunnel, and the running connector is refused when it reconnects.
    response = edge.curl(f"alpha.{ZONE}", "/after", "-i")
    assert response.stdout.startswith(b"HTTP/1.1 404"), response.stdout[:200]
    wait_until(lambda: not connector.alive(), 30, "the deleted tunnel's connector to exit")
    assert connector.popen.returncode == 3
    assert "credentials rejected" in connector.log()
    restarted = edge.cli("burrow", "tunnel", "run", "--credentials-file", saved, "--url", "http://127.0.0.1:1",
                         env=env, check=False, timeout=30)
    assert restarted.returncode == 3 and "credentials rejected" in restarted.stderr
    names = [t["name"] for t in json.loads(edge.cli("burrow", "tunnel", "list", "-o", "json", env=env).stdout)]
    assert "alpha" not in names
    one_line_error(edge.cli("burrow", "tunnel", "delete", "alpha", env=env, check=False), "tunnel 'alpha' not found", 1)


def test_cleanup_removes_stale_connection_records(edge, mgr):
    env, _ = mgr
    beta = edge.cli("burrow", "tunnel", "info", "beta", "-o", "json", env=env)
    beta_id = json.loads(beta.stdout)["id"]
    with sqlite3.connect(edge.home / "registry.db", timeout=10) as db:  # a row left by an edge that crashed
        db.execute(
            "INSERT INTO connections VALUES ('stale-1', ?, 'gone', 0, 'old-edge-run', 'burrow/0.0.1', '10.9.9.9:1', '2025-01-01')",
            (beta_id,),
        )
    assert "1 stale connection record(s)" in edge.cli("burrow", "tunnel", "info", "beta", env=env).stdout
    assert "Removed 1 stale connection record(s) of tunnel beta" in edge.cli("burrow", "tunnel", "cleanup", "beta", env=env).stdout
    assert "Removed 0 stale" in edge.cli("burrow", "tunnel", "cleanup", beta_id, env=env).stdout
    with sqlite3.connect(edge.home / "registry.db", timeout=10) as db:
        assert db.execute("SELECT count(*) FROM connections WHERE id = 'stale-1'").fetchone()[0] == 0
    one_line_error(edge.cli("burrow", "tunnel", "cleanup", "nope", env=env, check=False), "tunnel 'nope' not found", 1)


def test_token_runs_a_tunnel_with_no_files(edge, mgr):
    env, port = mgr
    edge.cli("burrow", "tunnel", "route", "dns", "beta", f"beta.{ZONE}", env=env)
    token = edge.cli("burrow", "tunnel", "token", "beta", env=env).stdout.strip()
    empty = edge.tmp / "empty-home"
    empty.mkdir()
    run_env = {**edge.env, "BURROW_HOME": str(empty)}
    connector = edge.start(
        ["burrow", "tunnel", "run", "--token", token, "--url", f"http://127.0.0.1:{port}"], "connector-token", run_env
    )
    connector.wait_for_log(r"tunnel\.registered index=", count=4)
    result = edge.curl(f"beta.{ZONE}", "/via-token")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["target"] == "/via-token"
    assert list(empty.iterdir()) == []
    connector.stop()
    bad = edge.cli("burrow", "tunnel", "run", "--token", "bm9wZQ==", env=run_env, check=False)
    one_line_error(bad, "invalid tunnel token", 2)


def test_account_list_and_revoke_keep_running_tunnels(edge):
    env = edge.login("leaving")
    edge.cli("burrow", "tunnel", "create", "site", env=env)
    edge.cli("burrow", "tunnel", "route", "dns", "site", f"leaving.{ZONE}", env=env)
    listed = edge.cli("burrow-edge", "account", "list", "--home", edge.home).stdout
    assert " leaving " in listed
    config = Path(env["BURROW_HOME"]) / "config.yml"
    config.write_text("tunnel: site\ningress:\n  - service: http_status:204\n")
    connector = edge.start(["burrow", "tunnel", "run", "site"], "connector-leaving", env)
    connector.wait_for_log(r"tunnel\.registered index=", count=4)

    assert "Revoked account leaving" in edge.cli("burrow-edge", "account", "revoke", "leaving", "--home", edge.home).stdout
    assert " leaving " not in edge.cli("burrow-edge", "account", "list", "--home", edge.home).stdout
    one_line_error(edge.cli("burrow", "tunnel", "list", env=env, check=False), "login token rejected", 3)
    edge.login("refresher")  # any API write refreshes the edge's snapshot, as the 5 s poll would
    response = edge.curl(f"leaving.{ZONE}", "/", "-i")
    assert response.stdout.startswith(b"HTTP/1.1 204"), response.stdout[:200]  # running tunnels keep running
    assert connector.alive()
    one_line_error(edge.cli("burrow-edge", "account", "revoke", "leaving", "--home", edge.home, check=False),
                   "account 'leaving' not found", 1)
