"""Private networks in the registry: the CIDRs an account's tunnels serve (`route ip`) and the
service tokens each network admits (`access policy set-network`).

Routes are per account: two accounts may route the same CIDR, each reaching its own
tunnel. Within one account routes never overlap (`--overwrite` replaces the overlapping ones),
so at most one route covers an address.
"""

from __future__ import annotations

import ipaddress
import json
import logging

from edge.registry.database import Database, live_tunnel, timestamp
from edge.registry.models import IpRoute, PrivateSnapshot, ServiceToken
from edge.registry.policy import IpNetwork
from shared.errors import ConfigError, ConflictError, NotFoundError

log = logging.getLogger(__name__)

MAX_COMMENT = 200


def parse_network(text: str) -> IpNetwork:
    """A CIDR (host bits cleared) or one address (as a /32 or /128)."""
    try:
        return ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        raise ConfigError(f"invalid CIDR {text!r}: use e.g. 198.18.5.0/24, 198.18.5.10 or 2001:db8::/48") from None


def _overlap(a: IpNetwork, b: IpNetwork) -> bool:
    return a.version == b.version and a.overlaps(b)


class NetworkStore(Database):
    """What `route ip` and `access policy set-network` keep."""

    def add_ip_route(
        self, account_id: str, network: str, tunnel: str, comment: str = "", overwrite: bool = False
    ) -> tuple[IpRoute, list[str]]:
        """Route `network` to the account's `tunnel`; returns the route and the networks it replaced
        (overlapping routes are refused unless `overwrite`)."""
        net = parse_network(network)
        if len(comment) > MAX_COMMENT:
            raise ConfigError(f"the comment is longer than {MAX_COMMENT} characters")
        with self._write() as db:
            target = live_tunnel(db, account_id, tunnel)
            rows = db.execute("SELECT network FROM ip_routes WHERE account_id = ?", (account_id,)).fetchall()
            overlapping = [text for (text,) in rows if _overlap(net, ipaddress.ip_network(text))]
            if overlapping and not overwrite:
                raise ConflictError(
                    f"{net} overlaps the route{'s' if len(overlapping) > 1 else ''} {', '.join(overlapping)} of this account; "
                    "use --overwrite to replace"
                )
            for text in overlapping:
                db.execute("DELETE FROM ip_routes WHERE account_id = ? AND network = ?", (account_id, text))
            route = IpRoute(str(net), target.id, target.name, comment, timestamp())
            db.execute(
                "INSERT INTO ip_routes (account_id, network, tunnel_id, comment, created_at) VALUES (?, ?, ?, ?, ?)",
                (account_id, route.network, target.id, comment, route.created_at),
            )
        log.info("route.ip_added account=%s network=%s tunnel=%s replaced=%s", account_id, net, target.id, ",".join(overlapping) or "-")
        return route, overlapping

    def ip_routes(self, account_id: str) -> list[IpRoute]:
        rows = self._rows(
            "SELECT r.network, r.tunnel_id, t.name, r.comment, r.created_at FROM ip_routes r "
            "JOIN tunnels t ON t.id = r.tunnel_id WHERE r.account_id = ? ORDER BY r.created_at, r.network",
            (account_id,),
        )
        return [IpRoute(*row) for row in rows]

    def delete_ip_route(self, account_id: str, network: str) -> str:
        net = str(parse_network(network))
        with self._write() as db:
            if db.execute("DELETE FROM ip_routes WHERE account_id = ? AND network = ?", (account_id, net)).rowcount == 0:
                raise NotFoundError(f"no route for {net}")
        log.info("route.ip_deleted account=%s network=%s", account_id, net)
        return net

    def set_network_policy(self, account_id: str, network: str, allow_tokens: list[str]) -> str:
        """Which service tokens may reach `network` (inside one of the account's routes)."""
        net = parse_network(network)
        with self._write() as db:
            routes = [ipaddress.ip_network(text) for (text,) in db.execute(
                "SELECT network FROM ip_routes WHERE account_id = ?", (account_id,)
            ).fetchall()]  # fmt: skip
            if not any(net.version == route.version and net.subnet_of(route) for route in routes):
                raise NotFoundError(f"{net} is not inside a route of this account; add one with `burrow tunnel route ip add`")
            for name in allow_tokens:
                if not db.execute(
                    "SELECT 1 FROM service_tokens WHERE account_id = ? AND name = ? AND revoked_at IS NULL", (account_id, name)
                ).fetchone():
                    raise NotFoundError(f"service token '{name}' not found; create it with `burrow access token create {name}`")
            db.execute("DELETE FROM network_policies WHERE account_id = ? AND network = ?", (account_id, str(net)))
            db.execute(
                "INSERT INTO network_policies (account_id, network, allow_tokens, updated_at) VALUES (?, ?, ?, ?)",
                (account_id, str(net), json.dumps(sorted(set(allow_tokens))), timestamp()),
            )
        log.info("access.network_policy_set account=%s network=%s tokens=%d", account_id, net, len(set(allow_tokens)))
        return str(net)

    def network_policies(self, account_id: str) -> dict[str, list[str]]:
        rows = self._rows(
            "SELECT network, allow_tokens FROM network_policies WHERE account_id = ? ORDER BY network", (account_id,)
        )
        return {network: json.loads(tokens) for network, tokens in rows}

    def delete_network_policy(self, account_id: str, network: str) -> str:
        net = str(parse_network(network))
        with self._write() as db:
            if db.execute(
                "DELETE FROM network_policies WHERE account_id = ? AND network = ?", (account_id, net)
            ).rowcount == 0:
                raise NotFoundError(f"{net} has no network policy")
        log.info("access.network_policy_deleted account=%s network=%s", account_id, net)
        return net

    def private_snapshot(self) -> PrivateSnapshot:
        with self._read() as db:
            routes = db.execute(
                "SELECT r.account_id, r.network, r.tunnel_id FROM ip_routes r "
                "JOIN tunnels t ON t.id = r.tunnel_id JOIN accounts a ON a.id = r.account_id "
                "WHERE t.deleted_at IS NULL AND a.revoked_at IS NULL"
            ).fetchall()
            policies = db.execute("SELECT account_id, network, allow_tokens FROM network_policies").fetchall()
            tokens = db.execute(
                "SELECT client_id, account_id, name, created_at, secret_hash FROM service_tokens WHERE revoked_at IS NULL"
            ).fetchall()
        by_account: dict[str, list] = {}
        for account_id, network, tunnel_id in routes:
            by_account.setdefault(account_id, []).append((ipaddress.ip_network(network), tunnel_id))
        allowed: dict[str, list] = {}
        for account_id, network, names in policies:
            allowed.setdefault(account_id, []).append((ipaddress.ip_network(network), frozenset(json.loads(names))))
        specific_first = lambda pair: -pair[0].prefixlen  # noqa: E731
        return PrivateSnapshot(
            {account: tuple(sorted(pairs, key=specific_first)) for account, pairs in by_account.items()},
            {account: tuple(sorted(pairs, key=specific_first)) for account, pairs in allowed.items()},
            {row[0]: ServiceToken(*row) for row in tokens},
        )
