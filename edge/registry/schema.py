"""The registry's schema as numbered migrations, portable to SQLite and PostgreSQL.

The version (`PRAGMA user_version` on SQLite, the `schema_version` table on PostgreSQL)
holds how many steps a database has had. Each step runs
in its own transaction together with the version bump, so a crash leaves the
database at the old version or the new one, never in between. Databases made
before versioning (issue 2) are at version 0 and already hold step 1's tables,
which is why step 1 only creates what is missing.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.errors import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: accounts, tunnels, CNAME records (the issue-2 schema).
    (
        """CREATE TABLE IF NOT EXISTS accounts (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )""",
        """CREATE TABLE IF NOT EXISTS tunnels (
            id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts(id),
            name TEXT NOT NULL,
            secret_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            deleted_at TEXT
        )""",
        """CREATE UNIQUE INDEX IF NOT EXISTS tunnels_live_name
            ON tunnels(account_id, name) WHERE deleted_at IS NULL""",
        """CREATE TABLE IF NOT EXISTS records (
            hostname TEXT PRIMARY KEY,
            type TEXT NOT NULL CHECK (type = 'CNAME'),
            target TEXT NOT NULL,
            account_id TEXT NOT NULL REFERENCES accounts(id),
            tunnel_id TEXT NOT NULL REFERENCES tunnels(id),
            created_at TEXT NOT NULL
        )""",
    ),
    # 2: live connector connections, TXT records, lookups by tunnel.
    (
        """CREATE TABLE connections (
            id TEXT PRIMARY KEY,
            tunnel_id TEXT NOT NULL REFERENCES tunnels(id),
            connector_id TEXT NOT NULL,
            conn_index INTEGER NOT NULL,
            edge_id TEXT NOT NULL,
            client_version TEXT NOT NULL,
            source TEXT NOT NULL,
            connected_at TEXT NOT NULL
        )""",
        "CREATE INDEX connections_tunnel ON connections(tunnel_id)",
        """CREATE TABLE txt_records (
            hostname TEXT PRIMARY KEY,
            "values" TEXT NOT NULL,
            account_id TEXT NOT NULL REFERENCES accounts(id),
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX records_tunnel ON records(tunnel_id)",
    ),
    # 3: Access: service tokens, per-hostname policies, login users, the edges' JWT public keys.
    (
        """CREATE TABLE service_tokens (
            client_id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts(id),
            name TEXT NOT NULL,
            secret_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )""",
        """CREATE UNIQUE INDEX service_tokens_live_name
            ON service_tokens(account_id, name) WHERE revoked_at IS NULL""",
        """CREATE TABLE policies (
            hostname TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts(id),
            policy TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE access_users (
            account_id TEXT NOT NULL REFERENCES accounts(id),
            email TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (account_id, email)
        )""",
        """CREATE TABLE access_keys (
            kid TEXT PRIMARY KEY,
            jwk TEXT NOT NULL,
            created_at TEXT NOT NULL,
            seen_at TEXT NOT NULL
        )""",
    ),
    # 4: private networks: the CIDRs each tunnel serves (`route ip`) and who may reach them.
    (
        """CREATE TABLE ip_routes (
            account_id TEXT NOT NULL REFERENCES accounts(id),
            network TEXT NOT NULL,
            tunnel_id TEXT NOT NULL REFERENCES tunnels(id),
            comment TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (account_id, network)
        )""",
        "CREATE INDEX ip_routes_tunnel ON ip_routes(tunnel_id)",
        """CREATE TABLE network_policies (
            account_id TEXT NOT NULL REFERENCES accounts(id),
            network TEXT NOT NULL,
            allow_tokens TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (account_id, network)
        )""",
    ),
    # 5 (port_routes): public TCP and UDP ports reserved by tunnels.
    (
        """CREATE TABLE port_routes (
            protocol TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp')),
            port INTEGER NOT NULL,
            account_id TEXT NOT NULL REFERENCES accounts(id),
            tunnel_id TEXT NOT NULL REFERENCES tunnels(id),
            created_at TEXT NOT NULL,
            PRIMARY KEY (protocol, port)
        )""",
        "CREATE INDEX port_routes_tunnel ON port_routes(tunnel_id)",
    ),
    # 6: the edges sharing this registry: who is alive (heartbeat, unix ms), where, how many sessions.
    (
        """CREATE TABLE edges (
            name TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            public_ips TEXT NOT NULL,
            tunnel_endpoint TEXT NOT NULL,
            started_at TEXT NOT NULL,
            heartbeat_at BIGINT NOT NULL,
            sessions INTEGER NOT NULL
        )""",
    ),
)

LATEST = len(MIGRATIONS)


def migrate(conn: Any, dialect) -> int:
    """Apply every missing step, each in one write transaction; returns the final version.

    `conn` is in autocommit mode; concurrent edges wait for each other's step (the write lock).
    """
    while True:
        dialect.begin_write(conn, False)
        try:
            current = dialect.version(conn)
            if current >= LATEST:
                conn.execute("COMMIT")
                break
            for statement in MIGRATIONS[current]:
                conn.execute(statement)
            dialect.set_version(conn, current + 1)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        log.info("registry.migrated version=%d", current + 1)
    if current > LATEST:
        raise ConfigError(f"registry schema version {current} is newer than this program knows ({LATEST}); upgrade burrow-edge")
    return current
