"""Access in the registry: service tokens (hashes only), hostname policies, login users and
the edge's published signing keys."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from edge.registry.database import Database, check_name, timestamp
from edge.registry.models import AccessSnapshot, ServiceToken
from edge.registry.policy import Policy
from edge.registry.routes import owned_host
from shared.crypto import hash_secret, mint_secret
from shared.errors import ConflictError, NotFoundError

log = logging.getLogger(__name__)


class AccessStore(Database):
    """What the Access gate and the `/api/v1/access` routes keep."""

    def create_service_token(self, account_id: str, name: str) -> tuple[ServiceToken, str]:
        """A new service token and its secret (plaintext, shown only now)."""
        check_name("service token", name)
        secret = mint_secret().hex()
        token = ServiceToken(mint_secret()[:16].hex() + ".access", account_id, name, timestamp())
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
        rows = self._rows(
            "SELECT client_id, account_id, name, created_at FROM service_tokens "
            "WHERE account_id = ? AND revoked_at IS NULL ORDER BY name",
            (account_id,),
        )
        return [ServiceToken(*row) for row in rows]

    def revoke_service_token(self, account_id: str, name: str) -> None:
        """Revoke the account's live token `name`; requests carrying it are refused from the next refresh."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE service_tokens SET revoked_at = ? WHERE account_id = ? AND name = ? AND revoked_at IS NULL",
                (timestamp(), account_id, name),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"service token '{name}' not found")
        log.info("access.token_revoked account=%s name=%s", account_id, name)

    def set_policy(self, account_id: str, hostname: str, policy: Policy) -> str:
        """Store the policy of a hostname the account routes; returns the normalized hostname."""
        with self._write() as db:
            host = owned_host(db, account_id, hostname)
            for name in policy.allow_tokens:
                if not db.execute(
                    "SELECT 1 FROM service_tokens WHERE account_id = ? AND name = ? AND revoked_at IS NULL",
                    (account_id, name),
                ).fetchone():
                    raise NotFoundError(f"service token '{name}' not found; create it with `burrow access token create {name}`")
            db.execute(
                "INSERT INTO policies (hostname, account_id, policy, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (hostname) DO UPDATE SET account_id = excluded.account_id, policy = excluded.policy, "
                "updated_at = excluded.updated_at",
                (host, account_id, json.dumps(policy.to_json()), timestamp()),
            )
        log.info("access.policy_set account=%s host=%s access=%s", account_id, host, policy.requires_access)
        return host

    def get_policy(self, account_id: str, hostname: str) -> tuple[str, Policy | None]:
        """The hostname and its policy (None: no policy) for a hostname the account routes."""
        with self._read() as db:
            host = owned_host(db, account_id, hostname)
            row = db.execute("SELECT policy FROM policies WHERE hostname = ?", (host,)).fetchone()
        return host, Policy.parse(json.loads(row[0])) if row else None

    def delete_policy(self, account_id: str, hostname: str) -> str:
        with self._write() as db:
            host = owned_host(db, account_id, hostname)
            if db.execute("DELETE FROM policies WHERE hostname = ?", (host,)).rowcount == 0:
                raise NotFoundError(f"hostname '{host}' has no policy")
        log.info("access.policy_deleted account=%s host=%s", account_id, host)
        return host

    def set_access_user(self, account_id: str, email: str, password_hash: str) -> None:
        """Add (or replace the password of) a person who may sign in on the account's hostnames."""
        with self._write() as db:
            db.execute(
                "INSERT INTO access_users (account_id, email, password_hash, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (account_id, email) DO UPDATE SET password_hash = excluded.password_hash, "
                "created_at = excluded.created_at",
                (account_id, email, password_hash, timestamp()),
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
        seen = timestamp()
        with self._write(notify=False) as db:
            db.execute(
                "INSERT INTO access_keys (kid, jwk, created_at, seen_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kid) DO UPDATE SET seen_at = excluded.seen_at",
                (kid, json.dumps(jwk), seen, seen),
            )

    def access_keys(self, max_age: float) -> list[dict]:
        """The public keys an edge published within the last `max_age` seconds (older ones are retired)."""
        since = datetime.fromtimestamp(datetime.now(UTC).timestamp() - max_age, UTC).isoformat(timespec="seconds")
        with self._read() as db:
            rows = db.execute(
                "SELECT jwk FROM access_keys WHERE seen_at >= ? ORDER BY created_at, kid", (since,)
            ).fetchall()
        return [json.loads(jwk) for (jwk,) in rows]
