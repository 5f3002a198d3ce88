"""The registry's records as frozen dataclasses: what its queries return."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.registry.policy import IpNetwork, Policy


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
class PortRoute:
    """A public TCP or UDP port of the edge reserved for a tunnel."""

    protocol: str  # "tcp" | "udp"
    port: int
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


@dataclass(frozen=True)
class IpRoute:
    """`burrow tunnel route ip add`: the account's tunnel serves the private network `network`."""

    network: str
    tunnel_id: str
    tunnel_name: str
    comment: str
    created_at: str


@dataclass(frozen=True)
class PrivateSnapshot:
    """What the edge needs per private-network flow, read in one transaction."""

    routes: dict[str, tuple[tuple[IpNetwork, str], ...]]  # account id → (network, tunnel id), most specific first
    policies: dict[str, tuple[tuple[IpNetwork, frozenset[str]], ...]]  # account id → (network, allowed token names)
    tokens: dict[str, ServiceToken]  # live service tokens by client id


@dataclass(frozen=True)
class EdgeInfo:
    """One edge sharing the registry, as its last heartbeat left it."""

    name: str
    run_id: str  # this run's id: its connection rows carry it as `edge_id`
    public_ips: tuple[str, ...]
    tunnel_endpoint: str  # HOST:PORT connectors dial
    started_at: str
    heartbeat_at: int  # unix milliseconds
    sessions: int
    live: bool
