"""Tell connectors when the live edges change: one `edges` stream (`shared.edge_news`) to one
session of every connector that registered `FEATURE_EDGES`, so a connector that registered while
this edge was alone moves some of its HA connections to an edge that joined since (the connector
moves them one at a time, each drained first: connector/tunnel/supervisor.py)."""

from __future__ import annotations

import logging
import trio

from edge.routing.router import Router
from shared import edge_news
from shared.errors import BurrowError
from shared.protocol import KIND_EDGES
from shared.registration import FEATURE_EDGES
from shared.transport import TunnelConnection

log = logging.getLogger(__name__)

TELL_TIMEOUT = 5.0  # seconds one connector has to answer
MAX_TELLING = 64  # streams open at once, so a change does not burst over every session at the same time


class EdgeNews:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.endpoints: list[str] = []  # the live edges' tunnel endpoints, this edge first
        self._changed = trio.Event()

    def changed(self, endpoints: list[str]) -> None:
        """The live edges changed (`Membership`'s callback): tell the connectors soon."""
        self.endpoints = endpoints
        self._changed.set()

    async def run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = trio.Event()  # a change while telling: tell again after
            await self.tell_all(self.endpoints)

    async def tell_all(self, endpoints: list[str]) -> None:
        sessions = self.router.one_per_connector(FEATURE_EDGES)
        told = [0]
        limiter = trio.CapacityLimiter(MAX_TELLING)
        async with trio.open_nursery() as nursery:
            for session in sessions:
                nursery.start_soon(self._tell, limiter, session, endpoints, told)
        log.info("edge.members_told connectors=%d answered=%d edges=%s", len(sessions), told[0], ",".join(endpoints))

    async def _tell(self, limiter: trio.CapacityLimiter, session: TunnelConnection, endpoints: list[str], told: list[int]) -> None:
        async with limiter:
            with trio.move_on_after(TELL_TIMEOUT):
                try:
                    async with await session.open_stream(edge_news.encode(endpoints), KIND_EDGES) as stream:
                        if (await stream.receive_response()).status == 204:
                            told[0] += 1
                except (BurrowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:  # the session ended meanwhile
                    log.debug("edge.members_untold error=%s", exc)
