"""The edge's state on SQLite: accounts, tunnels, secret hashes, DNS records.

Only hashes of login tokens and tunnel secrets are stored. Every write is
committed with `synchronous=FULL`, so an acknowledged write survives a crash.
Methods block: call them from a worker thread (`trio.to_thread.run_sync`).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge.zone import TUNNELS_LABEL, Zone, Zones
from shared.crypto import SECRET_BYTES, hash_secret, mint_token, verify_secret
from shared.errors import AuthError, ConfigError, ConflictError, NotFoundError

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_HOSTNAME = 253
BUSY_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS tunnels (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    deleted_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS tunnels_live_name
    ON tunnels(account_id, name) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS records (
    hostname TEXT PRIMARY KEY,
    type TEXT NOT NULL CHECK (type = 'CNAME'),
    target TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    tunnel_id TEXT NOT NULL REFERENCES tunnels(id),
    created_at TEXT NOT NULL
);
"""


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
class Record:
    hostname: str
    type: str
    target: str
    account_id: str
    tunnel_id: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(
            f"invalid {kind} name {name!r}: use 1-64 of a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return name


def _check_hostname(hostname: str, zone_name: str) -> str:
    """`hostname` normalized, if it is a valid name strictly inside the zone."""
    host = hostname.strip().lower().rstrip(".") if isinstance(hostname, str) else ""
    zone = zone_name.lower().rstrip(".")
    valid = (
        0 < len(host) <= MAX_HOSTNAME
        and all(LABEL_RE.fullmatch(label) for label in host.split("."))
    )
    if not valid:
        raise ConfigError(f"hostname {hostname!r} is not a valid DNS name")
    tunnels = f"{TUNNELS_LABEL}.{zone}"
    if not host.endswith("." + zone) or host == tunnels or host.endswith("." + tunnels):
        raise ConfigError(f"hostname '{host}' is outside the zone '{zone}'")
    return host


class Registry:
    """Repository over one SQLite database; safe to share between threads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> Registry:
        """Open (creating if needed) the database at `path`."""
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
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
        """Revoke the live account `name`: its token and tunnels stop working."""
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

    # DNS records

    def route_dns(
        self,
        account_id: str,
        tunnel_id: str,
        hostname: str,
        zone_name: str,
        overwrite: bool = False,
    ) -> Record:
        """Point `hostname` (inside the zone) at the account's tunnel with a CNAME."""
        host = _check_hostname(hostname, zone_name)
        target = Zone(zone_name.lower().rstrip(".")).tunnel_target(tunnel_id)
        record = Record(host, "CNAME", target, account_id, tunnel_id)
        with self._write() as db:
            if not db.execute(
                "SELECT 1 FROM tunnels WHERE id = ? AND account_id = ? AND deleted_at IS NULL",
                (tunnel_id, account_id),
            ).fetchone():
                raise NotFoundError(f"tunnel '{tunnel_id}' not found")
            row = db.execute(
                "SELECT account_id, target FROM records WHERE hostname = ?", (host,)
            ).fetchone()
            if row is not None:
                owner, current = row
                if owner != account_id:
                    raise ConflictError(f"hostname '{host}' belongs to another account")
                if current == target:
                    return record
                if not overwrite:
                    raise ConflictError(
                        f"hostname '{host}' already routes to {current}; use overwrite"
                    )
            db.execute(
                "INSERT OR REPLACE INTO records "
                "(hostname, type, target, account_id, tunnel_id, created_at) "
                "VALUES (?, 'CNAME', ?, ?, ?, ?)",
                (host, target, account_id, tunnel_id, _now()),
            )
        log.info("dns.routed account=%s host=%s tunnel=%s", account_id, host, tunnel_id)
        return record

    def zone(self, zone_name: str) -> Zone:
        """A snapshot of one zone's records and of the tunnels that may carry traffic."""
        return self.zones([zone_name]).zones[0]

    def zones(self, zone_names: list[str]) -> Zones:
        """A snapshot of every zone: each record goes to the longest zone containing it."""
        with self._read() as db:
            records = db.execute("SELECT hostname, target FROM records").fetchall()
            ids = db.execute(
                "SELECT t.id FROM tunnels t JOIN accounts a ON a.id = t.account_id "
                "WHERE t.deleted_at IS NULL AND a.revoked_at IS NULL"
            ).fetchall()
        tunnel_ids = frozenset(i for (i,) in ids)
        names = [name.lower().rstrip(".") for name in zone_names]
        owned: dict[str, dict[str, str]] = {name: {} for name in names}
        for host, target in records:
            zone = max((n for n in names if host == n or host.endswith("." + n)), key=len, default=None)
            if zone is not None:
                owned[zone][host] = target
        return Zones(tuple(Zone(name, owned[name], tunnel_ids) for name in names))
