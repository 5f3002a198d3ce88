"""`burrow-edge account list`: a table with a header for people, JSON or YAML for scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

EDGE = Path(sys.executable).parent / "burrow-edge"


def edge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(EDGE), *args], capture_output=True, text=True, timeout=60)


def test_account_list_outputs(tmp_path):
    home = str(tmp_path / "edge")
    assert edge("init", "--home", home, "--zone", "example.test", "--public-ip", "127.0.0.1").returncode == 0
    for name in ("bob", "alice"):
        assert edge("account", "create", name, "--home", home).returncode == 0

    table = edge("account", "list", "--home", home).stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "CREATED"]
    assert [line.split()[1] for line in table[1:]] == ["alice", "bob"]

    listed = json.loads(edge("account", "list", "--home", home, "--output", "json").stdout)
    assert [a["name"] for a in listed] == ["alice", "bob"] and set(listed[0]) == {"id", "name", "created_at"}
    assert yaml.safe_load(edge("account", "list", "--home", home, "-o", "yaml").stdout) == listed

    bad = edge("account", "list", "--home", home, "-o", "xml")
    assert bad.returncode == 2 and bad.stderr == "error: --output must be one of table, json, yaml, not 'xml'\n"
