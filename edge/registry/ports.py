"""Public TCP and UDP ports in the registry: one port of the edge's range reserved for one
tunnel (`burrow tunnel route tcp|udp`). A port belongs to the account that reserved it
first; the edge opens a listener for every reserved port."""

from __future__ import annotations

import logging

from edge.registry.database import Database, timestamp
from edge.registry.models import PortRoute
from shared.edge_config import PortRange
from shared.errors import ConfigError, ConflictError, NotFoundError

log = logging.getLogger(__name__)

PROTOCOLS = ("tcp", "udp")
DEFAULT_MAX_PER_ACCOUNT = 10  # public ports (TCP and UDP together) one account may hold: `burrow-edge serve --max-ports-per-account`
_COLUMNS = "protocol, port, account_id, tunnel_id"


def check_port(protocol: str, port: object, ports: PortRange | None) -> int:
    """`port` if it is in the edge's public range for `protocol`, else ConfigError saying why."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r} (tcp or udp)")
    kind = protocol.upper()
    if ports is None:
        raise ConfigError(
            f"this edge has no public {kind} ports (the operator enables them with burrow-edge init --{protocol}-ports LO-HI)"
        )
    if isinstance(port, bool) or not isinstance(port, int) or port not in ports:
        raise ConfigError(f"port {port} is outside this edge's public {kind} ports {ports}")
    return port


class PortStore(Database):
    """Port routes: reserve, release, list."""

    def route_port(
        self, account_id: str, tunnel_id: str, protocol: str, port: int, ports: PortRange | None,
        max_per_account: int = DEFAULT_MAX_PER_ACCOUNT,
    ) -> PortRoute:
        """Reserve `port` for the account's tunnel (moving it from another of its tunnels);
        ConflictError when another account holds it, or when the account already holds
        `max_per_account` other ports."""
        check_port(protocol, port, ports)
        route = PortRoute(protocol, port, account_id, tunnel_id)
        with self._write() as db:
            if not db.execute(
                "SELECT 1 FROM tunnels WHERE id = ? AND account_id = ? AND deleted_at IS NULL", (tunnel_id, account_id)
            ).fetchone():
                raise NotFoundError(f"tunnel '{tunnel_id}' not found")
            row = db.execute("SELECT account_id FROM port_routes WHERE protocol = ? AND port = ?", (protocol, port)).fetchone()
            if row is not None and row[0] != account_id:
                raise ConflictError(f"{protocol.upper()} port {port} is reserved by another account")
            if row is None:
                (held,) = db.execute("SELECT count(*) FROM port_routes WHERE account_id = ?", (account_id,)).fetchone()
                if held >= max_per_account:
                    raise ConflictError(
                        f"this account holds {held} public ports, this edge's limit (burrow-edge serve --max-ports-per-account): "
                        "release one with `burrow tunnel route tcp|udp delete NAME PORT`"
                    )
            db.execute("DELETE FROM port_routes WHERE protocol = ? AND port = ?", (protocol, port))
            db.execute(
                "INSERT INTO port_routes (protocol, port, account_id, tunnel_id, created_at) VALUES (?, ?, ?, ?, ?)",
                (protocol, port, account_id, tunnel_id, timestamp()),
            )
        log.info("port.routed account=%s protocol=%s port=%d tunnel=%s", account_id, protocol, port, tunnel_id)
        return route

    def remove_port(self, account_id: str, tunnel_id: str, protocol: str, port: int) -> PortRoute:
        """Release the port the account's tunnel holds; any other is simply not found."""
        with self._write() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM port_routes WHERE protocol = ? AND port = ? AND account_id = ? AND tunnel_id = ?",
                (protocol, port, account_id, tunnel_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"{protocol.upper()} port {port} is not routed to this tunnel")
            db.execute("DELETE FROM port_routes WHERE protocol = ? AND port = ?", (protocol, port))
        log.info("port.unrouted account=%s protocol=%s port=%d", account_id, protocol, port)
        return PortRoute(*row)

    def port_routes(self, account_id: str | None = None) -> list[PortRoute]:
        """The account's port routes (every account's with None), by protocol and port."""
        where, args = ("WHERE account_id = ?", (account_id,)) if account_id is not None else ("", ())
        rows = self._rows(f"SELECT {_COLUMNS} FROM port_routes {where} ORDER BY protocol, port", args)
        return [PortRoute(*row) for row in rows]
