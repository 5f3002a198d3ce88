"""DNS records in the registry: routes (CNAMEs to tunnels), TXT records, and the zone
snapshots the DNS server and the router answer from."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from edge.dns import hostnames
from edge.dns.zone import Zone, Zones, ancestors
from edge.registry.database import Database, timestamp
from edge.registry.models import Record
from shared.errors import ConfigError, ConflictError, NotFoundError

log = logging.getLogger(__name__)

MAX_TXT_VALUES = 16
MAX_TXT_VALUE = 255


class RouteStore(Database):
    """The DNS records accounts own."""

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
                "INSERT INTO records (hostname, type, target, account_id, tunnel_id, created_at) "
                "VALUES (?, 'CNAME', ?, ?, ?, ?) ON CONFLICT (hostname) DO UPDATE SET "
                "target = excluded.target, account_id = excluded.account_id, tunnel_id = excluded.tunnel_id, "
                "created_at = excluded.created_at",
                (host, target, account_id, tunnel_id, timestamp()),
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
        rows = self._rows(
            "SELECT hostname, type, target, account_id, tunnel_id FROM records "
            "WHERE account_id = ? ORDER BY hostname",
            (account_id,),
        )
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
                    'INSERT INTO txt_records (hostname, "values", account_id, updated_at) VALUES (?, ?, ?, ?) '
                    'ON CONFLICT (hostname) DO UPDATE SET "values" = excluded."values", '
                    "account_id = excluded.account_id, updated_at = excluded.updated_at",
                    (host, json.dumps(values), account_id, timestamp()),
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


def owned_host(db, account_id: str, hostname: str) -> str:
    """`hostname` normalized, if the account routes it; another account's name is simply not found."""
    try:
        host = hostnames.normalize(hostname)
    except ConfigError:
        host = str(hostname)
    row = db.execute("SELECT account_id FROM records WHERE hostname = ?", (host,)).fetchone()
    if row is None or row[0] != account_id:
        raise NotFoundError(f"hostname '{host}' is not routed by this account (route it with `burrow tunnel route dns`)")
    return host


def _check_owner(db, account_id: str, host: str, zone: str) -> None:
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
