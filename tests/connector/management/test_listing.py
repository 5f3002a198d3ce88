"""`tunnel list` / `tunnel info` rendering."""

from __future__ import annotations

import json

import pytest
import yaml

from connector.management.listing import check_output, render_info, render_list
from shared.errors import ConfigError

TUNNELS = [
    {"id": "id-1", "name": "web", "created_at": "2026-01-01", "connections": 4, "hostnames": ["a.x.test", "b.x.test"]},
    {"id": "id-2", "name": "idle-tunnel", "created_at": "2026-01-02", "connections": 0, "hostnames": []},
]


def test_list_table_json_yaml() -> None:
    lines = render_list(TUNNELS, "table").splitlines()
    assert lines[0].split() == ["NAME", "ID", "CREATED", "CONNECTIONS", "HOSTNAMES"]
    assert lines[1].split() == ["web", "id-1", "2026-01-01", "4", "a.x.test,b.x.test"]
    assert lines[2].split() == ["idle-tunnel", "id-2", "2026-01-02", "0", "-"]
    assert lines[1].index("id-1") == lines[0].index("ID")  # columns line up
    assert json.loads(render_list(TUNNELS, "json")) == TUNNELS
    assert yaml.safe_load(render_list(TUNNELS, "yaml")) == TUNNELS
    with pytest.raises(ConfigError, match="--output must be one of table, json, yaml"):
        check_output("xml")


def conn(index: int, connector: str = "c1", source: str = "10.0.0.1") -> dict:
    return {"id": f"{connector}-{index}", "connector_id": connector, "conn_index": index, "edge_id": "e1",
            "client_version": "burrow/0.1.0", "source": f"{source}:{4000 + index}", "connected_at": f"2026-01-01T00:00:0{index}"}


def test_info_groups_connections_by_connector() -> None:
    connections = {"connections": [conn(1), conn(0), conn(0, "c2", "10.0.0.2")], "stale": 2}
    text = render_info(TUNNELS[0], connections, "table")
    assert "NAME:       web" in text and "HOSTNAMES:  a.x.test, b.x.test" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("c")}
    assert rows["c1"] == ["c1", "burrow/0.1.0", "10.0.0.1", "0,1", "e1", "2026-01-01T00:00:00"]
    assert rows["c2"][2:4] == ["10.0.0.2", "0"]
    assert "2 stale connection record(s); `burrow tunnel cleanup web` removes them." in text
    data = json.loads(render_info(TUNNELS[0], connections, "json"))
    assert [c["connections"] for c in data["connectors"]] == [[0, 1], [0]]
    assert "no active connection" in render_info(TUNNELS[1], {"connections": [], "stale": 0}, "table")


def test_info_shows_each_connectors_pools() -> None:
    origin = {"url": "http://127.0.0.1:9001", "healthy": False, "in_flight": 1, "requests": 12, "checks_failed": 3,
              "last_check": False, "checked_at": 1.7e9}
    pools = {"connectors": [
        {"connector_id": "c1c1c1c1-aaaa", "pools": [{"name": "web", "policy": "round_robin", "checked": True, "retries": 0,
                                                     "origins": [origin]}], "truncated": False, "error": ""},
        {"connector_id": "c2c2c2c2-bbbb", "pools": None, "truncated": False, "error": "unknown (connector too old)"},
    ]}
    connections = {"connections": [conn(0)], "stale": 0}
    lines = render_info(TUNNELS[0], connections, "table", pools).splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["CONNECTOR", "POOL"])
    assert lines[header].split()[:4] == ["CONNECTOR", "POOL", "POLICY", "ORIGIN"]
    assert lines[header + 1].split() == ["c1c1c1c1", "web", "round_robin", "http://127.0.0.1:9001", "UNHEALTHY", "1", "12",
                                         "failed", "(3", "failed)"]
    assert "unknown (connector too old)" in lines[header + 2]
    assert json.loads(render_info(TUNNELS[0], connections, "json", pools))["pools"] == pools["connectors"]
    assert "POOL" not in render_info(TUNNELS[0], connections, "table", None)
    assert "POOL" not in render_info(TUNNELS[0], connections, "table", {"connectors": [dict(pools["connectors"][0], pools=[])]})
