"""The one lookup both the DNS server and the router use: hostname → tunnel.

Pure: a `Zone` is an immutable snapshot of the registry's records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TUNNELS_LABEL = "tunnels"


def normalize_host(host: str) -> str:
    """Lower-case `host` without a trailing dot or `:port` (IPv6 brackets kept)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


@dataclass(frozen=True)
class Zone:
    """The edge's zone: its CNAME records and the tunnels that exist."""

    name: str
    records: Mapping[str, str] = field(default_factory=dict)  # hostname → CNAME target
    tunnel_ids: frozenset[str] = frozenset()

    @property
    def tunnels_domain(self) -> str:
        return f"{TUNNELS_LABEL}.{self.name}"

    def tunnel_target(self, tunnel_id: str) -> str:
        """The CNAME target that points a hostname at `tunnel_id`."""
        return f"{tunnel_id}.{self.tunnels_domain}"

    def contains(self, host: str) -> bool:
        host = normalize_host(host)
        return host == self.name or host.endswith("." + self.name)

    def tunnel_for(self, host: str) -> str | None:
        """The tunnel id `host` routes to, or None when it routes nowhere."""
        host = normalize_host(host)
        target = self.records.get(host, host)
        suffix = "." + self.tunnels_domain
        if not target.endswith(suffix):
            return None
        tunnel_id = target[: -len(suffix)]
        return tunnel_id if tunnel_id in self.tunnel_ids else None
