"""`burrow service install|uninstall` and the shipped systemd units, checked by `systemd-analyze verify`."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector import cli
from connector.management import service

REPO = Path(__file__).resolve().parents[3]
DEPLOY_UNITS = sorted((REPO / "deploy" / "systemd").glob("*.service"))
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
HARDENING = [
    "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
    "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "LockPersonality=yes", "MemoryDenyWriteExecute=yes",
    "SystemCallFilter=@system-service", "Restart=on-failure", "RestartSec=5s",
]
assert DEPLOY_UNITS

needs_analyze = pytest.mark.skipif(
    not Path(SYSTEMD_ANALYZE).exists() or not (SYSTEM_UNITS / "sysinit.target").exists(),
    reason="systemd-analyze and the system's targets are needed to verify units",
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def unit_lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines()}


def verify_root(root: Path, units: list[str]) -> subprocess.CompletedProcess:
    """`systemd-analyze verify --root=ROOT`: the stock targets copied in, every Exec* binary stubbed there."""
    targets = root / "usr/lib/systemd/system"
    targets.mkdir(parents=True, exist_ok=True)
    for target in SYSTEM_UNITS.glob("*.target"):
        shutil.copy(target, targets)
    for unit in (root / "etc/systemd/system").glob("*.service"):
        for line in unit.read_text().splitlines():
            if line.startswith(("ExecStart=", "ExecReload=")):
                binary = root / line.split("=", 1)[1].split()[0].lstrip("/")
                binary.parent.mkdir(parents=True, exist_ok=True)
                binary.write_text("#!/bin/sh\n")
                binary.chmod(0o755)
    return subprocess.run([SYSTEMD_ANALYZE, "verify", f"--root={root}", *units], capture_output=True, text=True)


@needs_analyze
@pytest.mark.parametrize("unit", DEPLOY_UNITS, ids=[unit.name for unit in DEPLOY_UNITS])
def test_shipped_units_pass_systemd_analyze_verify(tmp_path, unit):
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(unit, tmp_path / "etc/systemd/system")
    name = unit.name.replace("@.", "@my-web-tunnel.")
    result = verify_root(tmp_path, [name])
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


@pytest.mark.parametrize("unit", DEPLOY_UNITS, ids=[unit.name for unit in DEPLOY_UNITS])
def test_shipped_units_are_hardened(unit):
    lines = unit_lines(unit.read_text())
    assert set(HARDENING) <= lines
    if unit.name == "burrow-edge.service":
        assert {"User=burrow-edge", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "StateDirectory=burrow-edge",
                "Environment=BURROW_EDGE_HOME=/var/lib/burrow-edge"} <= lines
    else:
        assert {"User=burrow", "CapabilityBoundingSet=", "AmbientCapabilities="} <= lines


def test_shipped_tunnel_unit_is_what_service_install_writes():
    assert (REPO / "deploy/systemd/burrow-tunnel@.service").read_text() == service.render_unit("/usr/local/bin/burrow")


@pytest.fixture
def tunnel_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    creds = {
        "AccountTag": "acct", "TunnelID": "6ff42ae2-765d-4adf-8112-31c55c1551ef", "TunnelName": "my-web-tunnel",
        "TunnelSecret": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cw==", "Endpoint": "127.0.0.1:7844",
    }
    (home / "my-web-tunnel").mkdir(parents=True)
    (home / "my-web-tunnel" / "credentials.json").write_text(json.dumps(creds))
    (home / "config.yml").write_text("tunnel: my-web-tunnel\ningress:\n  - service: http://127.0.0.1:8000\n")
    monkeypatch.setenv("BURROW_HOME", str(home))
    return home


def invoke(*args):
    return CliRunner().invoke(cli.app, [str(arg) for arg in args])


@needs_analyze
def test_install_writes_a_unit_that_verifies_and_the_files_it_runs_with(tmp_path, tunnel_home):
    root = tmp_path / "root"
    result = invoke("service", "install", "--root", root)
    assert result.exit_code == 0, result.output
    unit = root / "etc/systemd/system/burrow-tunnel@.service"
    assert unit.read_text() == service.render_unit(service.default_binary())
    assert mode(unit) == 0o644
    config, creds = root / "etc/burrow/my-web-tunnel.yml", root / "etc/burrow/my-web-tunnel.json"
    assert config.read_bytes() == (tunnel_home / "config.yml").read_bytes() and mode(config) == 0o640
    assert creds.read_bytes() == (tunnel_home / "my-web-tunnel/credentials.json").read_bytes() and mode(creds) == 0o600
    # not the live system: nothing was run, the commands are printed instead
    assert "sudo systemctl daemon-reload" in result.output
    assert "sudo systemctl enable --now burrow-tunnel@my-web-tunnel" in result.output

    verified = verify_root(root, ["burrow-tunnel@my-web-tunnel.service"])
    assert verified.returncode == 0 and verified.stdout + verified.stderr == "", verified.stderr

    # what ExecStart runs, as the service would (minus systemd): the config and credentials load
    exec_start = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    argv = exec_start.split("=", 1)[1].replace("%i", "my-web-tunnel").replace("/etc/burrow", str(root / "etc/burrow")).split()
    assert argv[1:5] == ["tunnel", "run", "--config", str(config)]

    result = invoke("service", "uninstall", "--root", root)
    assert result.exit_code == 0, result.output
    assert not config.exists() and not creds.exists() and not unit.exists()
    assert "sudo systemctl disable --now burrow-tunnel@my-web-tunnel" in result.output


def test_install_by_uuid_uses_the_tunnel_name_and_checks_the_pair(tmp_path, tunnel_home):
    root = tmp_path / "root"
    result = invoke("service", "install", "--root", root, "--tunnel", "6ff42ae2-765d-4adf-8112-31c55c1551ef", "--config", tunnel_home / "config.yml")
    assert result.exit_code == 0, result.output
    assert (root / "etc/burrow/my-web-tunnel.json").exists()
    result = invoke("service", "install", "--root", root, "--tunnel", "other")
    assert result.exit_code == 2 and "other" in result.output


def test_install_refuses_a_config_that_would_not_run(tmp_path, tunnel_home):
    (tunnel_home / "config.yml").write_text("tunnel: my-web-tunnel\ningress:\n  - hostname: a.example.com\n    service: http://x\n")
    result = invoke("service", "install", "--root", tmp_path / "root")
    assert result.exit_code == 2
    assert not (tmp_path / "root/etc/systemd/system").exists()


def test_install_without_root_privileges_refuses_in_one_line(tunnel_home, monkeypatch):
    monkeypatch.setattr(service.os, "geteuid", lambda: 1000)
    for args in (["service", "install"], ["service", "uninstall"]):
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: installing a system service needs root"), result.output


def test_live_system_runs_systemctl_when_systemd_runs(tmp_path, monkeypatch):
    """With root `/` and systemd up, install runs daemon-reload and enable --now (a fake runner here)."""
    layout = service.Layout(tmp_path)
    monkeypatch.setattr(service.Layout, "is_live_system", property(lambda self: True))
    monkeypatch.setattr(service.Layout, "systemd_running", lambda self: True)
    monkeypatch.setattr(service, "_service_user", lambda layout, run, outcome: None)
    (tmp_path / "c.yml").write_text("ingress:\n  - service: http_status:404\n")
    (tmp_path / "c.json").write_text("{}")
    ran = []
    outcome = service.install(layout, "web", tmp_path / "c.yml", tmp_path / "c.json", "/usr/bin/burrow", run=ran.append)
    assert ran == [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "burrow-tunnel@web"]]
    assert outcome.to_run == []
    ran.clear()
    service.uninstall(layout, "web", run=ran.append)
    assert ran == [["systemctl", "disable", "--now", "burrow-tunnel@web"], ["systemctl", "daemon-reload"]]


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "a@b", "x" * 200])
def test_instance_names_that_would_need_escaping_are_refused(name):
    with pytest.raises(service.ConfigError):
        service.instance_name(name)
