"""The one lookup both the DNS server and the router use: hostname → tunnel.

Pure: a `Zone` is an immutable snapshot of one zone's records; `Zones` holds
every zone the edge is authoritative for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

TUNNELS_LABEL = "tunnels"
QUICK_LABEL = "quick"  # quick tunnels' names: WORD-WORD-WORD.quick.<zone>, never an account's
NS_LABEL = "ns1"  # the edge's own name server in every zone


def normalize_host(host: str) -> str:
    """Lower-case `host` without a trailing dot or `:port` (IPv6 brackets kept)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def ancestors(host: str) -> list[str]:
    """`a.b.c` → [`b.c`, `c`]: every name above `host`, nearest first."""
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels))]


@dataclass(frozen=True)
class Zone:
    """One zone: its CNAME and TXT records and the tunnels that exist.

    Record names may be wildcards (`*.dev.example.com`): a wildcard answers for
    any name below it that has no record of its own, the closest one winning
    (RFC 4592, without empty non-terminals blocking it).
    """

    name: str
    records: Mapping[str, str] = field(default_factory=dict)  # hostname → CNAME target
    tunnel_ids: frozenset[str] = frozenset()
    txt: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def tunnels_domain(self) -> str:
        return f"{TUNNELS_LABEL}.{self.name}"

    @cached_property
    def serial(self) -> int:
        """The SOA serial: a 32-bit digest of this snapshot, so it changes when the data does."""
        digest = hashlib.blake2b(digest_size=4)
        for part in (sorted(self.records.items()), sorted(self.txt.items()), sorted(self.tunnel_ids)):
            digest.update(repr(part).encode())
        return int.from_bytes(digest.digest(), "big")

    @cached_property
    def empty_non_terminals(self) -> frozenset[str]:
        """Names without records of their own that have records below them: they exist (NODATA, not NXDOMAIN)."""
        names = set()
        for host in (*self.records, *self.txt):
            for parent in ancestors(host):
                if not parent.endswith("." + self.name):
                    break
                names.add(parent)
        return frozenset(names - self.records.keys() - self.txt.keys())

    def tunnel_target(self, tunnel_id: str) -> str:
        """The CNAME target that points a hostname at `tunnel_id`."""
        return f"{tunnel_id}.{self.tunnels_domain}"

    def contains(self, host: str) -> bool:
        host = normalize_host(host)
        return host == self.name or host.endswith("." + self.name)

    def owner(self, host: str) -> str | None:
        """The record name that answers for `host`: itself, or the closest wildcard above it.
        No wildcard answers under `quick.<zone>`: those names are quick tunnels' or nobody's."""
        host = normalize_host(host)
        if host in self.records or host in self.txt:
            return host
        if host.endswith(f".{QUICK_LABEL}.{self.name}") or host == f"{QUICK_LABEL}.{self.name}":
            return None
        for parent in ancestors(host):
            if not (parent == self.name or parent.endswith("." + self.name)):
                break
            wildcard = "*." + parent
            if wildcard in self.records or wildcard in self.txt:
                return wildcard
        return None

    def cname(self, host: str) -> str | None:
        owner = self.owner(host)
        return self.records.get(owner) if owner else None

    def tunnel_id_of_target(self, target: str) -> str | None:
        """The live tunnel a `<uuid>.tunnels.<zone>` name stands for, or None."""
        suffix = "." + self.tunnels_domain
        if not target.endswith(suffix):
            return None
        tunnel_id = target[: -len(suffix)]
        return tunnel_id if tunnel_id in self.tunnel_ids else None

    def tunnel_for(self, host: str) -> str | None:
        """The tunnel id `host` routes to, or None when it routes nowhere."""
        host = normalize_host(host)
        if host.endswith("." + self.tunnels_domain):  # the edge's own names: no record or wildcard covers them
            return self.tunnel_id_of_target(host)
        return self.tunnel_id_of_target(self.cname(host) or host)


@dataclass(frozen=True)
class Zones:
    """Every zone the edge serves; a name belongs to the longest zone containing it."""

    zones: tuple[Zone, ...] = ()

    def zone_for(self, host: str) -> Zone | None:
        host = normalize_host(host)
        matching = [zone for zone in self.zones if zone.contains(host)]
        return max(matching, key=lambda zone: len(zone.name), default=None)

    def tunnel_for(self, host: str) -> str | None:
        zone = self.zone_for(host)
        return zone.tunnel_for(host) if zone else None

    def with_hosts(self, hosts: Mapping[str, str]) -> Zones:
        """These zones plus a CNAME from each hostname in `hosts` to its tunnel (quick tunnels,
        which live in memory, not in the registry); a hostname outside every zone is skipped."""
        added: dict[str, dict[str, str]] = {}
        for host, tunnel_id in hosts.items():
            if (zone := self.zone_for(host)) is not None:
                added.setdefault(zone.name, {})[host] = tunnel_id
        return Zones(tuple(
            replace(
                zone,
                records={**zone.records, **{host: zone.tunnel_target(tid) for host, tid in added[zone.name].items()}},
                tunnel_ids=zone.tunnel_ids | frozenset(added[zone.name].values()),
            ) if zone.name in added else zone
            for zone in self.zones
        ))
