"""Which edge each HA connection dials (sans-IO).

At first every connection knows only the configured endpoint. Each registration reply lists the
live edges sharing the registry; when there are two or more, connection `i` dials the `i`-th of
them (in one sorted order, modulo their number), so 4 connections land on min(4, n) distinct edges. An edge
that failed a dial or dropped a session is avoided for `AVOID_FOR` seconds, so the connections it
held move to the others at once rather than waiting for it to leave the list.
"""

from __future__ import annotations

AVOID_FOR = 30.0  # seconds an edge that failed is skipped (it leaves the edges' own lists within 15 s)


class EdgeChooser:
    def __init__(self, configured: str) -> None:
        self.configured = configured
        self.known: tuple[str, ...] = (configured,)
        self.several = False  # a reply listed two edges or more: this registry has several
        self._avoid: dict[str, float] = {}  # endpoint → until when (the caller's clock)

    def learn(self, edges: tuple[str, ...] | list[str]) -> bool:
        """The live edges a registration reply (or an `edges` stream) listed; True if that changed
        where the connections belong. Until a list names two or more (one edge, or an edge that
        predates the lists), the configured endpoint, which may be a name, a NAT or a proxy in
        front of the edge, stays the only one; from then on the lists are followed."""
        unique = set(edges)
        self.several = self.several or len(unique) >= 2
        known = self.known
        if self.several and unique:
            self.known = tuple(sorted(unique))
        return self.known != known

    def failed(self, endpoint: str, now: float) -> None:
        if len(self.known) > 1:  # with one edge there is nowhere else to go
            self._avoid[endpoint] = now + AVOID_FOR

    def endpoint_for(self, index: int, now: float) -> str:
        """Where connection `index` dials now."""
        usable = [edge for edge in self.known if self._avoid.get(edge, 0.0) <= now] or list(self.known)
        return usable[index % len(usable)]
