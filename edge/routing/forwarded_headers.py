"""Which of a visitor's request headers may travel on to the origin."""

from __future__ import annotations

from shared.events import Headers, end_to_end

# Names only the edge sets; a visitor's copies are dropped (also spelled with `_`, which
# CGI-style servers read as the same header).
EDGE_SET_PREFIXES = (b"burrow-",)
EDGE_SET_NAMES = frozenset({b"x-forwarded-for", b"x-forwarded-proto"})


def forwardable(headers: Headers, upgrade: bool = False) -> Headers:
    """`headers` without hop-by-hop fields, fields named in Connection, and spoofs of the
    edge's own headers. An upgrade request keeps its Upgrade field; a TE asking for
    trailers becomes `te: trailers` (gRPC needs it)."""
    kept = tuple((name, value) for name, value in end_to_end(headers) if not _edge_set(name))
    if upgrade:
        kept += tuple((name, value) for name, value in headers if name == b"upgrade")
    if any(name == b"te" and b"trailers" in value.lower() for name, value in headers):
        kept += ((b"te", b"trailers"),)
    return kept


def _edge_set(name: bytes) -> bool:
    name = name.replace(b"_", b"-")
    return name in EDGE_SET_NAMES or name.startswith(EDGE_SET_PREFIXES)
