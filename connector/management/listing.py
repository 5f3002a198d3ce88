"""Pure rendering of `tunnel list` and `tunnel info` answers: table, JSON or YAML text."""

from __future__ import annotations

from typing import Any

from shared.output import OUTPUTS, check_output, structured, table

__all__ = ["OUTPUTS", "check_output", "render_info", "render_list"]

LIST_COLUMNS = ("NAME", "ID", "CREATED", "CONNECTIONS", "HOSTNAMES")
CONNECTOR_COLUMNS = ("CONNECTOR ID", "VERSION", "SOURCE", "CONNECTIONS", "EDGE", "CONNECTED SINCE")


def render_list(tunnels: list[dict[str, Any]], output: str) -> str:
    """`tunnel list`: one row per tunnel."""
    if output != "table":
        return structured(tunnels, output)
    rows = [
        (t["name"], t["id"], t["created_at"], str(t.get("connections", 0)), ",".join(t.get("hostnames", ())) or "-")
        for t in tunnels
    ]
    return table(LIST_COLUMNS, rows)


def format_ports(ports) -> str:
    """`tcp/20022, udp/20053`, or - without any."""
    return ", ".join(f"{p['protocol']}/{p['port']}" for p in ports) or "-"


def connectors(connections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Connections grouped by connector: its version, source hosts, indexes, edges, earliest start."""
    grouped: dict[str, dict[str, Any]] = {}
    for conn in sorted(connections, key=lambda c: (c["connector_id"], c["conn_index"])):
        entry = grouped.setdefault(
            conn["connector_id"],
            {"connector_id": conn["connector_id"], "version": conn["client_version"], "sources": [],
             "connections": [], "edges": [], "connected_since": conn["connected_at"]},
        )
        host = conn["source"].rsplit(":", 1)[0]
        if host not in entry["sources"]:
            entry["sources"].append(host)
        if conn["edge_id"] not in entry["edges"]:
            entry["edges"].append(conn["edge_id"])
        entry["connections"].append(conn["conn_index"])
        entry["connected_since"] = min(entry["connected_since"], conn["connected_at"])
    return list(grouped.values())


def render_info(tunnel: dict[str, Any], connections: dict[str, Any], output: str) -> str:
    """`tunnel info`: the tunnel, then one row per connector."""
    groups = connectors(connections["connections"])
    if output != "table":
        data = {k: tunnel[k] for k in ("id", "name", "created_at")}
        data |= {"hostnames": tunnel.get("hostnames", []), "ports": tunnel.get("ports", []), "connectors": groups}
        data["stale"] = connections["stale"]
        return structured(data, output)
    lines = [
        f"NAME:       {tunnel['name']}",
        f"ID:         {tunnel['id']}",
        f"CREATED:    {tunnel['created_at']}",
        f"HOSTNAMES:  {', '.join(tunnel.get('hostnames', ())) or '-'}",
        f"PORTS:      {format_ports(tunnel.get('ports', ()))}",
        "",
    ]
    if groups:
        rows = [
            (g["connector_id"], g["version"], ",".join(g["sources"]), ",".join(map(str, g["connections"])),
             ",".join(g["edges"]), g["connected_since"])
            for g in groups
        ]
        lines.append(table(CONNECTOR_COLUMNS, rows))
    else:
        lines.append("This tunnel has no active connection.")
    if connections["stale"]:
        lines.append(
            f"{connections['stale']} stale connection record(s); `burrow tunnel cleanup {tunnel['name']}` removes them."
        )
    return "\n".join(lines)
