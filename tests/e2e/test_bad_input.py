"""Bad input gets one clear line on stderr, a non-zero exit, and nothing written or lost."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from tests.e2e.conftest import ZONE, free_port


def assert_refused(result, message: str, code: int | None = None):
    assert result.returncode != 0
    if code is not None:
        assert result.returncode == code
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_wrong_login_token(edge):
    env = edge.connector_env("wrong-token")
    result = edge.cli("burrow", "tunnel", "login", edge.url, "--token", "brw_nope", "--ca-file", edge.ca, env=env, check=False)
    assert_refused(result, "login token rejected", code=3)
    assert not (Path(env["BURROW_HOME"]) / "cert.pem").exists()


def test_unreachable_edge_at_login(edge):
    env = edge.connector_env("unreachable")
    url = f"https://127.0.0.1:{free_port()}"
    result = edge.cli("burrow", "tunnel", "login", url, "--token", "brw_x", "--ca-file", edge.ca, env=env, check=False)
    assert_refused(result, "cannot reach the edge", code=4)
    assert not (Path(env["BURROW_HOME"]) / "cert.pem").exists()


def test_create_with_an_existing_name(edge):
    env = edge.login("bob")
    edge.cli("burrow", "tunnel", "create", "dup", env=env)
    creds = Path(env["BURROW_HOME"]) / "dup" / "credentials.json"
    before = creds.read_bytes()
    assert_refused(edge.cli("burrow", "tunnel", "create", "dup", env=env, check=False), "exists already")
    assert creds.read_bytes() == before

    other_home = edge.connector_env("bob-laptop")
    shutil.copy(Path(env["BURROW_HOME"]) / "cert.pem", Path(other_home["BURROW_HOME"]) / "cert.pem")
    result = edge.cli("burrow", "tunnel", "create", "dup", env=other_home, check=False)
    assert_refused(result, "tunnel 'dup' already exists")
    assert not (Path(other_home["BURROW_HOME"]) / "dup").exists()


def test_route_outside_the_zone_or_of_another_account(edge):
    carol = edge.login("carol")
    dave = edge.login("dave")
    for env in (carol, dave):
        edge.cli("burrow", "tunnel", "create", "site", env=env)
    edge.cli("burrow", "tunnel", "route", "dns", "site", f"carol.{ZONE}", env=carol)
    result = edge.cli("burrow", "tunnel", "route", "dns", "site", "app.example.org", env=carol, check=False)
    assert_refused(result, "outside the zone")
    result = edge.cli("burrow", "tunnel", "route", "dns", "site", f"carol.{ZONE}", env=dave, check=False)
    assert_refused(result, "belongs to another account")


def test_run_with_a_wrong_secret_exits_quickly(edge, tmp_path):
    env = edge.login("erin")
    edge.cli("burrow", "tunnel", "create", "t", env=env)
    creds_path = Path(env["BURROW_HOME"]) / "t" / "credentials.json"
    creds = json.loads(creds_path.read_text())
    creds["TunnelSecret"] = "A" * 43 + "="
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(creds))
    started = time.monotonic()
    result = edge.cli("burrow", "tunnel", "run", "--credentials-file", forged, env=env, check=False, timeout=30)
    assert time.monotonic() - started < 5
    assert result.returncode == 3
    assert "credentials rejected" in result.stderr
    assert result.stderr.count("credentials rejected") == 1  # no retry loop


def test_config_errors_name_the_line_or_rule(edge, tmp_path):
    env = edge.connector_env("configs")
    broken = tmp_path / "broken.yml"
    broken.write_text("tunnel: t\ningress:\n  - service: http://localhost:1\n   hostname: [\n")
    result = edge.cli("burrow", "tunnel", "run", "--config", broken, env=env, check=False)
    assert_refused(result, "line 4", code=2)

    no_catch_all = tmp_path / "no-catch-all.yml"
    no_catch_all.write_text("tunnel: t\ningress:\n  - hostname: a.example.test\n    service: http://localhost:1\n")
    result = edge.cli("burrow", "tunnel", "ingress", "validate", "--config", no_catch_all, env=env, check=False)
    assert_refused(result, "rule 1", code=2)
    assert "catch-all" in result.stderr


def test_unreachable_edge_at_run_retries_with_backoff(edge):
    env = edge.login("frank")
    edge.cli("burrow", "tunnel", "create", "t", env=env)
    creds_path = Path(env["BURROW_HOME"]) / "t" / "credentials.json"
    creds = json.loads(creds_path.read_text())
    creds["Endpoint"] = f"127.0.0.1:{free_port()}"
    creds_path.write_text(json.dumps(creds))
    proc = edge.start(["burrow", "tunnel", "run", "--ha-connections", "1", "t"], "unreachable-run", env)
    log = proc.wait_for_log(r"tunnel\.retrying index=0 in=[\d.]+s error=cannot reach the edge", count=2, timeout=15)
    assert "Traceback" not in log
    proc.stop()


def test_run_refuses_credentials_of_another_tunnel(edge, tmp_path):
    env = edge.login("gina")
    edge.cli("burrow", "tunnel", "create", "real", env=env)
    config = tmp_path / "config.yml"
    creds = Path(env["BURROW_HOME"]) / "real" / "credentials.json"
    config.write_text(f"credentials-file: {creds}\ningress:\n  - service: http_status:404\n")
    result = edge.cli("burrow", "tunnel", "run", "--config", config, "other", env=env, check=False)
    assert_refused(result, "holds the credentials of tunnel 'real', not 'other'", code=2)


def test_serve_on_a_port_in_use_says_so_in_one_line(edge, tmp_path):
    home = tmp_path / "edge2"
    edge.cli(
        "burrow-edge", "init", "--home", home, "--zone", "example.test", "--public-ip", "127.0.0.1",
        "--https-listen", f"127.0.0.1:{edge.https_port}", "--tunnel-listen", "127.0.0.1:0",
        "--dns-listen", "127.0.0.1:0",
    )
    (home / "certs").mkdir(exist_ok=True)
    for name in ("example.test.pem", "example.test.key"):
        shutil.copy(edge.home / "certs" / name, home / "certs" / name)
    result = edge.cli("burrow-edge", "serve", "--home", home, check=False, timeout=30)
    assert result.returncode == 2
    assert f"cannot listen for HTTPS on 127.0.0.1:{edge.https_port}" in result.stderr
    assert "Traceback" not in result.stderr
