"""The edge's state on SQLite: accounts, tunnels, secret hashes, DNS records.

Only hashes of login tokens and tunnel secrets are stored. Every write is
committed with `synchronous=FULL`, so an acknowledged write survives a crash.
Methods block: call them from a worker thread (`trio.to_thread.run_sync`).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edge.dns import hostnames
from edge.dns.zone import Zone, Zones, ancestors
from edge.registry import schema
from edge.registry.policy import Policy
from shared.crypto import SECRET_BYTES, hash_secret, mint_secret, mint_token, verify_secret
from shared.errors import AuthError, ConfigError, ConflictError, NotFoundError

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
BUSY_TIMEOUT_S = 10.0
MAX_TXT_VALUES = 16
MAX_TXT_VALUE = 255


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    created_at: str


@dataclass(frozen=True)
class Tunnel:
    id: str
    account_id: str
    name: str
    created_at: str


@dataclass(frozen=True)
class Connection:
    """One registered connector connection, as the edge that holds it recorded it."""

    id: str
    tunnel_id: str
    connector_id: str
    conn_index: int
    edge_id: str
    client_version: str
    source: str
    connected_at: str


CONNECTION_COLUMNS = "id, tunnel_id, connector_id, conn_index, edge_id, client_version, source, connected_at"


@dataclass(frozen=True)
class Record:
    hostname: str
    type: str
    target: str
    account_id: str
    tunnel_id: str


@dataclass(frozen=True)
class ServiceToken:
    """A machine credential for Access; the edge keeps only the hash of its secret."""

    client_id: str
    account_id: str
    name: str
    created_at: str
    secret_hash: str = field(default="", repr=False)


@dataclass(frozen=True)
class AccessSnapshot:
    """What the edge's gate needs per request, read in one transaction."""

    policies: dict[str, tuple[str, Policy]]  # hostname → (owner account id, policy)
    tokens: dict[str, ServiceToken]  # live tokens by client id
    users: dict[tuple[str, str], str]  # (account id, email) → password hash


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(
            f"invalid {kind} name {name!r}: use 1-64 of a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return name


class Registry:
    """Repository over one SQLite database; safe to share between threads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> Registry:
        """Open (creating if needed) the database at `path`."""
        Path(path).touch(mode=0o600, exist_ok=True)  # holds secret hashes: never world-readable
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        try:
            schema.migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent view across its queries."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction, committed on success."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # accounts

    def create_account(self, name: str) -> tuple[Account, str]:
        """A new account and its login token (plaintext, shown only now)."""
        _check_name("account", name)
        token = mint_token()
        account = Account(str(uuid.uuid4()), name, _now())
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
        with self._read() as db:
            rows = db.execute(
                "SELECT id, name, created_at FROM accounts "
                "WHERE revoked_at IS NULL ORDER BY name"
            ).fetchall()
        return [Account(*row) for row in rows]

    def revoke_account(self, name: str) -> None:
        """Revoke the live account `name`: its token stops working and its tunnels can no
        longer register; connections already running are left alone."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE accounts SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (_now(), name),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"account '{name}' not found")
        log.info("account.revoked name=%s", name)

    # tunnels

    def create_tunnel(self, account_id: str, name: str, secret: bytes) -> Tunnel:
        """A new tunnel; only the hash of `secret` is stored."""
        _check_name("tunnel", name)
        if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
            raise ConfigError(f"tunnel secret must be {SECRET_BYTES} bytes")
        tunnel = Tunnel(str(uuid.uuid4()), account_id, name, _now())
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
            row = db.execute(
                "SELECT id, account_id, name, created_at FROM tunnels "
                "WHERE account_id = ? AND deleted_at IS NULL AND (id = ? OR name = ?)",
                (account_id, name_or_id, name_or_id),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"tunnel '{name_or_id}' not found")
        return Tunnel(*row)

    def list_tunnels(self, account_id: str) -> list[Tunnel]:
        """The account's live tunnels, oldest first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id, account_id, name, created_at FROM tunnels "
                "WHERE account_id = ? AND deleted_at IS NULL ORDER BY created_at, name",
                (account_id,),
            ).fetchall()
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

    def delete_tunnel(self, account_id: str, name_or_id: str) -> Tunnel:
        """Soft-delete the account's tunnel; its DNS records and connection rows go in the same transaction.

        The row (and secret hash) stays, marked `deleted_at`, so its secret is rejected from now on.
        """
        with self._write() as db:
            row = db.execute(
                "SELECT id, account_id, name, created_at FROM tunnels "
                "WHERE account_id = ? AND deleted_at IS NULL AND (id = ? OR name = ?)",
                (account_id, name_or_id, name_or_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"tunnel '{name_or_id}' not found")
            tunnel = Tunnel(*row)
            db.execute("UPDATE tunnels SET deleted_at = ? WHERE id = ?", (_now(), tunnel.id))
            db.execute("DELETE FROM policies WHERE hostname IN (SELECT hostname FROM records WHERE tunnel_id = ?)", (tunnel.id,))
            db.execute("DELETE FROM records WHERE tunnel_id = ?", (tunnel.id,))
            db.execute("DELETE FROM connections WHERE tunnel_id = ?", (tunnel.id,))
        log.info("tunnel.deleted account=%s tunnel=%s name=%s", account_id, tunnel.id, tunnel.name)
        return tunnel

    # connections

    def add_connection(self, connection: Connection) -> None:
        """Record a registered connector connection; refused if its tunnel was deleted meanwhile."""
        c = connection
        with self._write() as db:
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
        with self._write() as db:
            db.execute("DELETE FROM connections WHERE id = ?", (connection_id,))

    def list_connections(self, tunnel_id: str) -> list[Connection]:
        """Every recorded connection of the tunnel (live or stale), by connector and index."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {CONNECTION_COLUMNS} FROM connections WHERE tunnel_id = ? "
                "ORDER BY connector_id, conn_index, connected_at",
                (tunnel_id,),
            ).fetchall()
        return [Connection(*row) for row in rows]

    def cleanup_connections(self, edge_id: str, tunnel_id: str | None = None) -> int:
        """Remove stale rows (another edge run's, or a deleted tunnel's); all tunnels or one. Returns how many."""
        where = "(edge_id != ? OR tunnel_id IN (SELECT id FROM tunnels WHERE deleted_at IS NOT NULL))"
        args: tuple = (edge_id,)
        if tunnel_id is not None:
            where += " AND tunnel_id = ?"
            args += (tunnel_id,)
        with self._write() as db:
            removed = db.execute(f"DELETE FROM connections WHERE {where}", args).rowcount
        if removed:
            log.info("connections.cleaned removed=%d tunnel=%s", removed, tunnel_id or "*")
        return removed

    # DNS records

    def route_dns(
        self,
        account_id: str,
        tunnel_id: str,
        hostname: str,
        zone_names: Sequence[str] | str,
        overwrite: bool = False,
    ) -> Record:
        """Point `hostname` at the account's tunnel with a CNAME into the longest zone holding it."""
        zone_names = [zone_names] if isinstance(zone_names, str) else list(zone_names)
        host, zone = hostnames.route_hostname(hostname, zone_names)
        target = Zone(zone).tunnel_target(tunnel_id)
        record = Record(host, "CNAME", target, account_id, tunnel_id)
        with self._write() as db:
            if not db.execute(
                "SELECT 1 FROM tunnels WHERE id = ? AND account_id = ? AND deleted_at IS NULL",
                (tunnel_id, account_id),
            ).fetchone():
                raise NotFoundError(f"tunnel '{tunnel_id}' not found")
            _check_owner(db, account_id, host, zone)
            if db.execute("SELECT 1 FROM txt_records WHERE hostname = ?", (host,)).fetchone():
                raise ConflictError(f"hostname '{host}' has TXT records; a CNAME cannot share its name")
            row = db.execute(
                "SELECT target FROM records WHERE hostname = ?", (host,)
            ).fetchone()
            if row is not None:
                (current,) = row
                if current == target:
                    return record
                if not overwrite:
                    raise ConflictError(
                        f"hostname '{host}' already routes to {current}; use --overwrite-dns to move it"
                    )
            db.execute(
                "INSERT OR REPLACE INTO records "
                "(hostname, type, target, account_id, tunnel_id, created_at) "
                "VALUES (?, 'CNAME', ?, ?, ?, ?)",
                (host, target, account_id, tunnel_id, _now()),
            )
        log.info("dns.routed account=%s host=%s tunnel=%s", account_id, host, tunnel_id)
        return record

    def remove_route(self, account_id: str, hostname: str) -> Record:
        """Remove the account's CNAME for `hostname`; another account's name is simply not found."""
        try:
            host = hostnames.normalize(hostname)
        except ConfigError:
            host = None
        with self._write() as db:
            row = db.execute(
                "SELECT hostname, type, target, account_id, tunnel_id FROM records "
                "WHERE hostname = ? AND account_id = ?",
                (host, account_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"hostname '{host or hostname}' has no route")
            db.execute("DELETE FROM records WHERE hostname = ?", (host,))
            db.execute("DELETE FROM policies WHERE hostname = ?", (host,))
        log.info("dns.unrouted account=%s host=%s", account_id, host)
        return Record(*row)

    def routes(self, account_id: str) -> list[Record]:
        """The account's CNAME records, by hostname."""
        with self._read() as db:
            rows = db.execute(
                "SELECT hostname, type, target, account_id, tunnel_id FROM records "
                "WHERE account_id = ? ORDER BY hostname",
                (account_id,),
            ).fetchall()
        return [Record(*row) for row in rows]

    def set_txt(
        self, account_id: str, hostname: str, values: Sequence[str], zone_names: Sequence[str]
    ) -> tuple[str, tuple[str, ...]]:
        """Replace the TXT values at `hostname` (no values: remove them). Returns (host, values)."""
        host, zone = hostnames.txt_hostname(hostname, list(zone_names))
        values = _check_txt_values(values)
        with self._write() as db:
            _check_owner(db, account_id, host, zone)
            if db.execute("SELECT 1 FROM records WHERE hostname = ?", (host,)).fetchone():
                raise ConflictError(f"hostname '{host}' has a CNAME record; TXT cannot share its name")
            if values:
                db.execute(
                    'INSERT OR REPLACE INTO txt_records (hostname, "values", account_id, updated_at) '
                    "VALUES (?, ?, ?, ?)",
                    (host, json.dumps(values), account_id, _now()),
                )
            else:
                db.execute("DELETE FROM txt_records WHERE hostname = ?", (host,))
        log.info("dns.txt account=%s host=%s values=%d", account_id, host, len(values))
        return host, values

    def zone(self, zone_name: str) -> Zone:
        """A snapshot of one zone's records and of the tunnels that may carry traffic."""
        return self.zones([zone_name]).zones[0]

    def zones(self, zone_names: list[str]) -> Zones:
        """A snapshot of every zone: each record goes to the longest zone containing it.

        Tunnels of revoked accounts stay in it: revocation stops the login token and new
        registrations, not sessions already running.
        """
        with self._read() as db:
            records = db.execute("SELECT hostname, target FROM records").fetchall()
            txts = db.execute('SELECT hostname, "values" FROM txt_records').fetchall()
            ids = db.execute("SELECT id FROM tunnels WHERE deleted_at IS NULL").fetchall()
        tunnel_ids = frozenset(i for (i,) in ids)
        names = [name.lower().rstrip(".") for name in zone_names]
        owned: dict[str, dict[str, str]] = {name: {} for name in names}
        owned_txt: dict[str, dict[str, tuple[str, ...]]] = {name: {} for name in names}
        for host, target in records:
            zone = hostnames.zone_of(host, names)
            if zone is not None:
                owned[zone][host] = target
        for host, values in txts:
            zone = hostnames.zone_of(host, names)
            if zone is not None:
                owned_txt[zone][host] = tuple(json.loads(values))
        return Zones(tuple(Zone(name, owned[name], tunnel_ids, owned_txt[name]) for name in names))

    # Access: service tokens, policies, login users, signing keys

    def create_service_token(self, account_id: str, name: str) -> tuple[ServiceToken, str]:
        """A new service token and its secret (plaintext, shown only now)."""
        _check_name("service token", name)
        secret = mint_secret().hex()
        token = ServiceToken(mint_secret()[:16].hex() + ".access", account_id, name, _now())
        with self._write() as db:
            if db.execute(
                "SELECT 1 FROM service_tokens WHERE account_id = ? AND name = ? AND revoked_at IS NULL",
                (account_id, name),
            ).fetchone():
                raise ConflictError(f"service token '{name}' already exists")
            db.execute(
                "INSERT INTO service_tokens (client_id, account_id, name, secret_hash, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (token.client_id, account_id, name, hash_secret(secret), token.created_at),
            )
        log.info("access.token_created account=%s name=%s client_id=%s", account_id, name, token.client_id)
        return token, secret

    def list_service_tokens(self, account_id: str) -> list[ServiceToken]:
        """The account's live service tokens, by name."""
        with self._read() as db:
            rows = db.execute(
                "SELECT client_id, account_id, name, created_at FROM service_tokens "
                "WHERE account_id = ? AND revoked_at IS NULL ORDER BY name",
                (account_id,),
            ).fetchall()
        return [ServiceToken(*row) for row in rows]

    def revoke_service_token(self, account_id: str, name: str) -> None:
        """Revoke the account's live token `name`; requests carrying it are refused from the next refresh."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE service_tokens SET revoked_at = ? WHERE account_id = ? AND name = ? AND revoked_at IS NULL",
                (_now(), account_id, name),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"service token '{name}' not found")
        log.info("access.token_revoked account=%s name=%s", account_id, name)

    def set_policy(self, account_id: str, hostname: str, policy: Policy) -> str:
        """Store the policy of a hostname the account routes; returns the normalized hostname."""
        with self._write() as db:
            host = _owned_host(db, account_id, hostname)
            for name in policy.allow_tokens:
                if not db.execute(
                    "SELECT 1 FROM service_tokens WHERE account_id = ? AND name = ? AND revoked_at IS NULL",
                    (account_id, name),
                ).fetchone():
                    raise NotFoundError(f"service token '{name}' not found; create it with `burrow access token create {name}`")
            db.execute(
                "INSERT OR REPLACE INTO policies (hostname, account_id, policy, updated_at) VALUES (?, ?, ?, ?)",
                (host, account_id, json.dumps(policy.to_json()), _now()),
            )
        log.info("access.policy_set account=%s host=%s access=%s", account_id, host, policy.requires_access)
        return host

    def get_policy(self, account_id: str, hostname: str) -> tuple[str, Policy | None]:
        """The hostname and its policy (None: no policy) for a hostname the account routes."""
        with self._read() as db:
            host = _owned_host(db, account_id, hostname)
            row = db.execute("SELECT policy FROM policies WHERE hostname = ?", (host,)).fetchone()
        return host, Policy.parse(json.loads(row[0])) if row else None

    def delete_policy(self, account_id: str, hostname: str) -> str:
        with self._write() as db:
            host = _owned_host(db, account_id, hostname)
            if db.execute("DELETE FROM policies WHERE hostname = ?", (host,)).rowcount == 0:
                raise NotFoundError(f"hostname '{host}' has no policy")
        log.info("access.policy_deleted account=%s host=%s", account_id, host)
        return host

    def set_access_user(self, account_id: str, email: str, password_hash: str) -> None:
        """Add (or replace the password of) a person who may sign in on the account's hostnames."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO access_users (account_id, email, password_hash, created_at) "
                "VALUES (?, ?, ?, ?)",
                (account_id, email, password_hash, _now()),
            )
        log.info("access.user_set account=%s email=%s", account_id, email)

    def remove_access_user(self, account_id: str, email: str) -> None:
        with self._write() as db:
            cur = db.execute("DELETE FROM access_users WHERE account_id = ? AND email = ?", (account_id, email))
            if cur.rowcount == 0:
                raise NotFoundError(f"access user '{email}' not found")
        log.info("access.user_removed account=%s email=%s", account_id, email)

    def list_access_users(self, account_id: str) -> list[str]:
        with self._read() as db:
            rows = db.execute(
                "SELECT email FROM access_users WHERE account_id = ? ORDER BY email", (account_id,)
            ).fetchall()
        return [email for (email,) in rows]

    def access_snapshot(self) -> AccessSnapshot:
        with self._read() as db:
            policies = db.execute("SELECT hostname, account_id, policy FROM policies").fetchall()
            tokens = db.execute(
                "SELECT client_id, account_id, name, created_at, secret_hash FROM service_tokens "
                "WHERE revoked_at IS NULL"
            ).fetchall()
            users = db.execute("SELECT account_id, email, password_hash FROM access_users").fetchall()
        return AccessSnapshot(
            {host: (account, Policy.parse(json.loads(raw))) for host, account, raw in policies},
            {row[0]: ServiceToken(*row) for row in tokens},
            {(account, email): hashed for account, email, hashed in users},
        )

    def publish_access_key(self, kid: str, jwk: dict) -> None:
        """Record (or mark as still in use) an edge's public JWT key, so every edge's JWKS lists it."""
        now = _now()
        with self._write() as db:
            db.execute(
                "INSERT INTO access_keys (kid, jwk, created_at, seen_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kid) DO UPDATE SET seen_at = excluded.seen_at",
                (kid, json.dumps(jwk), now, now),
            )

    def access_keys(self, max_age: float) -> list[dict]:
        """The public keys an edge published within the last `max_age` seconds (older ones are retired)."""
        since = datetime.fromtimestamp(datetime.now(UTC).timestamp() - max_age, UTC).isoformat(timespec="seconds")
        with self._read() as db:
            rows = db.execute(
                "SELECT jwk FROM access_keys WHERE seen_at >= ? ORDER BY created_at, kid", (since,)
            ).fetchall()
        return [json.loads(jwk) for (jwk,) in rows]


def _owned_host(db: sqlite3.Connection, account_id: str, hostname: str) -> str:
    """`hostname` normalized, if the account routes it; another account's name is simply not found."""
    try:
        host = hostnames.normalize(hostname)
    except ConfigError:
        host = str(hostname)
    row = db.execute("SELECT account_id FROM records WHERE hostname = ?", (host,)).fetchone()
    if row is None or row[0] != account_id:
        raise NotFoundError(f"hostname '{host}' is not routed by this account (route it with `burrow tunnel route dns`)")
    return host


def _check_owner(db: sqlite3.Connection, account_id: str, host: str, zone: str) -> None:
    """Refuse `host` if another account holds it, a wildcard covering it, or (for a wildcard) a name below it."""
    covering = [host] + ["*." + parent for parent in ancestors(host) if hostnames.zone_of(parent, [zone])]
    if host.startswith("*."):
        covering.append(host[1:])  # marker for names below the wildcard, see LIKE below
    for table in ("records", "txt_records"):
        for name in covering:
            if name.startswith("."):
                row = db.execute(
                    f"SELECT 1 FROM {table} WHERE hostname LIKE ? ESCAPE '\\' AND account_id != ? LIMIT 1",
                    ("%" + name.replace("_", "\\_"), account_id),
                ).fetchone()
            else:
                row = db.execute(
                    f"SELECT 1 FROM {table} WHERE hostname = ? AND account_id != ?", (name, account_id)
                ).fetchone()
            if row is not None:
                raise ConflictError(f"hostname '{host}' belongs to another account")


def _check_txt_values(values: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ConfigError("TXT values must be a list of strings")
    values = tuple(values)
    if len(values) > MAX_TXT_VALUES:
        raise ConfigError(f"at most {MAX_TXT_VALUES} TXT values per name")
    for value in values:
        if not value.isascii() or not value.isprintable() or not 0 < len(value) <= MAX_TXT_VALUE:
            raise ConfigError(f"TXT value {value[:20]!r} must be 1-{MAX_TXT_VALUE} printable ASCII characters")
    return values
