"""The `edges` stream (sans-IO): an edge tells a connector that registered `FEATURE_EDGES` which
edges are live now, the same list a registration reply carries (`Registered.edges`), so a
connector that met one edge spreads over a second one that joins later (docs/protocol.md).

One request head, target `/edges`, one `edge` field per tunnel endpoint (HOST:PORT, this
edge first); the connector answers 204, or 400 to a head it cannot read.
"""

from __future__ import annotations

from shared.events import RequestHead
from shared.registration import MAX_EDGES

EDGES_TARGET = b"/edges"
_FIELD = b"edge"
_MAX_ENDPOINT = 262  # a DNS name, a colon and a port


def encode(endpoints: list[str] | tuple[str, ...]) -> RequestHead:
    fields = tuple((_FIELD, endpoint.encode("ascii")) for endpoint in endpoints[:MAX_EDGES])
    return RequestHead(b"PUT", EDGES_TARGET, b"", b"https", fields)


def decode(head: RequestHead) -> tuple[str, ...]:
    """The live edges' tunnel endpoints; ValueError for anything else."""
    if head.target != EDGES_TARGET:
        raise ValueError(f"an edges stream's target is {EDGES_TARGET.decode()}, not {head.target[:64]!r}")
    values = [value for name, value in head.headers if name == _FIELD]
    if not 1 <= len(values) <= MAX_EDGES:
        raise ValueError(f"an edges stream lists 1 to {MAX_EDGES} edges, not {len(values)}")
    if not all(0 < len(value) <= _MAX_ENDPOINT and value.isascii() and b":" in value for value in values):
        raise ValueError("an edges stream lists HOST:PORT endpoints only")
    return tuple(value.decode("ascii") for value in values)
