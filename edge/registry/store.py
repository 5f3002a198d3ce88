"""The edge's state on SQLite or PostgreSQL: accounts, tunnels, secret hashes, DNS records.

Only hashes of login tokens and tunnel secrets are stored. Every write is
committed durably (SQLite `synchronous=FULL`, PostgreSQL's WAL), so an acknowledged
write survives a crash.
Methods block: call them from a worker thread (`trio.to_thread.run_sync`).
"""

from __future__ import annotations

import logging
import uuid

from edge.registry.access_store import AccessStore
from edge.registry.database import check_name, live_tunnel, timestamp
from edge.registry.edges import EdgeStore, live_since
from edge.registry.models import CONNECTION_COLUMNS, Account, Connection, Tunnel
from edge.registry.networks import NetworkStore
from edge.registry.ports import PortStore
from edge.registry.routes import RouteStore
from shared.crypto import SECRET_BYTES, hash_secret, mint_token, verify_secret
from shared.errors import AuthError, ConfigError, ConflictError, NotFoundError

log = logging.getLogger(__name__)


class Registry(RouteStore, AccessStore, NetworkStore, PortStore, EdgeStore):
    """Accounts, tunnels and live connections, with DNS records (`RouteStore`), Access
    (`AccessStore`), private networks (`NetworkStore`), public ports (`PortStore`) and the edges
    sharing the registry (`EdgeStore`); safe to share between threads."""

    # accounts

    def create_account(self, name: str) -> tuple[Account, str]:
        """A new account and its login token (plaintext, shown only now)."""
        check_name("account", name)
        token = mint_token()
        account = Account(str(uuid.uuid4()), name, timestamp())
        with self._write() as db:
            if db.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
                raise ConflictError(f"account '{name}' exists")
            db.execute(
                "INSERT INTO accounts (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                (account.id, name, hash_secret(token), account.created_at),
            )
        log.info("account.created account=%s name=%s", account.id, name)
        return account, token

    def authenticate(self, token: str) -> Account:
        """The live account whose login token is `token`."""
        if not isinstance(token, str) or not token:
            raise AuthError("login token rejected")
        with self._read() as db:
            row = db.execute(
                "SELECT id, name, created_at, token_hash FROM accounts "
                "WHERE token_hash = ? AND revoked_at IS NULL",
                (hash_secret(token),),
            ).fetchone()
        if row is None or not verify_secret(token, row[3]):
            raise AuthError("login token rejected")
        return Account(*row[:3])

    def list_accounts(self) -> list[Account]:
        """Live (non-revoked) accounts, by name."""
        rows = self._rows(
            "SELECT id, name, created_at FROM accounts "
            "WHERE revoked_at IS NULL ORDER BY name"
        )
        return [Account(*row) for row in rows]

    def revoke_account(self, name: str) -> None:
        """Revoke the live account `name`: its token stops working and its tunnels can no
        longer register; connections already running are left alone."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE accounts SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (timestamp(), name),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"account '{name}' not found")
        log.info("account.revoked name=%s", name)

    # tunnels

    def create_tunnel(self, account_id: str, name: str, secret: bytes) -> Tunnel:
        """A new tunnel; only the hash of `secret` is stored."""
        check_name("tunnel", name)
        if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
            raise ConfigError(f"tunnel secret must be {SECRET_BYTES} bytes")
        tunnel = Tunnel(str(uuid.uuid4()), account_id, name, timestamp())
        with self._write() as db:
            if db.execute(
                "SELECT 1 FROM tunnels WHERE account_id = ? AND name = ? AND deleted_at IS NULL",
                (account_id, name),
            ).fetchone():
                raise ConflictError(f"tunnel '{name}' already exists")
            db.execute(
                "INSERT INTO tunnels (id, account_id, name, secret_hash, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (tunnel.id, account_id, name, hash_secret(secret), tunnel.created_at),
            )
        log.info("tunnel.created account=%s tunnel=%s name=%s", account_id, tunnel.id, name)
        return tunnel

    def get_tunnel(self, account_id: str, name_or_id: str) -> Tunnel:
        """The account's live tunnel with this name or id."""
        with self._read() as db:
            return live_tunnel(db, account_id, name_or_id)

    def list_tunnels(self, account_id: str) -> list[Tunnel]:
        """The account's live tunnels, oldest first."""
        rows = self._rows(
            "SELECT id, account_id, name, created_at FROM tunnels "
            "WHERE account_id = ? AND deleted_at IS NULL ORDER BY created_at, name",
            (account_id,),
        )
        return [Tunnel(*row) for row in rows]

    def verify_tunnel(self, tunnel_id: str, secret: bytes) -> Tunnel:
        """The live tunnel `tunnel_id` of a live account, if `secret` is its secret."""
        with self._read() as db:
            row = db.execute(
                "SELECT t.id, t.account_id, t.name, t.created_at, t.secret_hash "
                "FROM tunnels t JOIN accounts a ON a.id = t.account_id "
                "WHERE t.id = ? AND t.deleted_at IS NULL AND a.revoked_at IS NULL",
                (tunnel_id,),
            ).fetchone()
        # Hash even when the tunnel is unknown, so both paths cost the same.
        stored = row[4] if row else hash_secret(b"")
        if not verify_secret(secret, stored) or row is None:
            raise AuthError("credentials rejected")
        return Tunnel(*row[:4])

    def deleted(self, tunnel_ids: list[str]) -> set[str]:
        """Those of `tunnel_ids` that were deleted."""
        if not tunnel_ids:
            return set()
        marks = ", ".join("?" * len(tunnel_ids))
        rows = self._rows(f"SELECT id FROM tunnels WHERE deleted_at IS NOT NULL AND id IN ({marks})", tuple(tunnel_ids))
        return {row[0] for row in rows}

    def delete_tunnel(self, account_id: str, name_or_id: str) -> Tunnel:
        """Soft-delete the account's tunnel; its DNS records, port routes and connection rows go in the same transaction.

        The row (and secret hash) stays, marked `deleted_at`, so its secret is rejected from now on.
        """
        with self._write() as db:
            tunnel = live_tunnel(db, account_id, name_or_id)
            db.execute("UPDATE tunnels SET deleted_at = ? WHERE id = ?", (timestamp(), tunnel.id))
            db.execute("DELETE FROM policies WHERE hostname IN (SELECT hostname FROM records WHERE tunnel_id = ?)", (tunnel.id,))
            db.execute("DELETE FROM records WHERE tunnel_id = ?", (tunnel.id,))
            db.execute("DELETE FROM ip_routes WHERE tunnel_id = ?", (tunnel.id,))
            db.execute("DELETE FROM port_routes WHERE tunnel_id = ?", (tunnel.id,))
            db.execute("DELETE FROM connections WHERE tunnel_id = ?", (tunnel.id,))
        log.info("tunnel.deleted account=%s tunnel=%s name=%s", account_id, tunnel.id, tunnel.name)
        return tunnel

    # connections

    def add_connection(self, connection: Connection) -> None:
        """Record a registered connector connection; refused if its tunnel was deleted meanwhile."""
        c = connection
        with self._write(notify=False) as db:
            cur = db.execute(
                "INSERT INTO connections (id, tunnel_id, connector_id, conn_index, edge_id, "
                "client_version, source, connected_at) "
                "SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS "
                "(SELECT 1 FROM tunnels WHERE id = ? AND deleted_at IS NULL)",
                (c.id, c.tunnel_id, c.connector_id, c.conn_index, c.edge_id,
                 c.client_version, c.source, c.connected_at, c.tunnel_id),
            )
            if cur.rowcount == 0:
                raise AuthError("credentials rejected")

    def remove_connection(self, connection_id: str) -> None:
        with self._write(notify=False) as db:
            db.execute("DELETE FROM connections WHERE id = ?", (connection_id,))

    def list_connections(self, tunnel_id: str) -> list[Connection]:
        """Every recorded connection of the tunnel (live or stale), by connector and index."""
        rows = self._rows(
            f"SELECT {CONNECTION_COLUMNS} FROM connections WHERE tunnel_id = ? "
            "ORDER BY connector_id, conn_index, connected_at",
            (tunnel_id,),
        )
        return [Connection(*row) for row in rows]

    def cleanup_connections(self, edge_id: str, tunnel_id: str | None = None, dead_edges_only: bool = False) -> int:
        """Remove stale rows (of an edge run neither this one nor live, or of a deleted tunnel); all tunnels
        or one. `dead_edges_only` (the heartbeat's sweep): only rows of edges known to have stopped
        beating, leaving rows of unknown runs to start-up and `burrow tunnel cleanup`. Returns how many."""
        if dead_edges_only:
            stale_run = "edge_id != ? AND edge_id IN (SELECT run_id FROM edges WHERE heartbeat_at < ?)"
        else:
            stale_run = "edge_id != ? AND edge_id NOT IN (SELECT run_id FROM edges WHERE heartbeat_at >= ?)"
        where = f"(({stale_run}) OR tunnel_id IN (SELECT id FROM tunnels WHERE deleted_at IS NOT NULL))"
        args: tuple = (edge_id, live_since())
        if tunnel_id is not None:
            where += " AND tunnel_id = ?"
            args += (tunnel_id,)
        with self._write(notify=False) as db:
            removed = db.execute(f"DELETE FROM connections WHERE {where}", args).rowcount
        if removed:
            log.info("connections.cleaned removed=%d tunnel=%s", removed, tunnel_id or "*")
        return removed

