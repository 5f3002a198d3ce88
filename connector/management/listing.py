"""Pure rendering of `tunnel list` and `tunnel info` answers: table, JSON or YAML text."""

from __future__ import annotations

from typing import Any

from shared.output import OUTPUTS, check_output, structured, table

__all__ = ["OUTPUTS", "check_output", "render_info", "render_list"]

LIST_COLUMNS = ("NAME", "ID", "CREATED", "CONNECTIONS", "HOSTNAMES")
CONNECTOR_COLUMNS = ("CONNECTOR ID", "VERSION", "SOURCE", "CONNECTIONS", "EDGE", "CONNECTED SINCE")
POOL_COLUMNS = ("CONNECTOR", "POOL", "POLICY", "ORIGIN", "STATE", "IN FLIGHT", "REQUESTS", "LAST CHECK")


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


def render_info(tunnel: dict[str, Any], connections: dict[str, Any], output: str, pools: dict[str, Any] | None = None) -> str:
    """`tunnel info`: the tunnel, then one row per connector, then one per origin of its pools
    (`pools`: the edge's `/pools` answer; None from an edge without it)."""
    groups = connectors(connections["connections"])
    if output != "table":
        data = {k: tunnel[k] for k in ("id", "name", "created_at")}
        data |= {"hostnames": tunnel.get("hostnames", []), "ports": tunnel.get("ports", []), "connectors": groups}
        data["stale"] = connections["stale"]
        if pools is not None:
            data["pools"] = pools["connectors"]
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
    if rows := pool_rows(pools["connectors"] if pools is not None else []):
        lines += ["", table(POOL_COLUMNS, rows)]
    return "\n".join(lines)


def pool_rows(answers: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row per origin of each connector's pools, or one saying why a connector's are unknown."""
    rows = []
    for answer in answers:
        connector = answer["connector_id"][:8]
        if answer["pools"] is None:
            rows.append((connector, "-", "-", answer["error"], "-", "-", "-", "-"))
            continue
        for pool in answer["pools"]:
            for origin in pool["origins"]:
                last = origin["last_check"]
                check = "-" if last is None else f"{'passed' if last else 'failed'} ({origin['checks_failed']} failed)"
                state = "healthy" if origin["healthy"] else "UNHEALTHY"
                rows.append(
                    (connector, pool["name"], pool["policy"], origin["url"], state, str(origin["in_flight"]), str(origin["requests"]), check)
                )
    return rows
