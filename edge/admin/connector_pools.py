"""Ask a tunnel's connectors for their origin pools' state, for the dashboard and the API.

One `status` stream (`shared.pool_status`) to one session of each connector that
registered `FEATURE_STATUS`, all at once, each within `ASK_TIMEOUT`; a connector
that did not register it is "too old", one that does not answer in time "no answer".
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import trio

from edge.routing.router import Router
from shared import pool_status
from shared.errors import BurrowError
from shared.events import RequestHead
from shared.pool_status import PoolReport
from shared.protocol import KIND_STATUS
from shared.registration import FEATURE_STATUS
from shared.transport import TunnelConnection

log = logging.getLogger(__name__)

ASK_TIMEOUT = 2.0  # seconds a connector has to answer
TOO_OLD = "unknown (connector too old)"


@dataclass(frozen=True)
class ConnectorPools:
    connector_id: str
    report: PoolReport | None  # None: see `error`
    error: str = ""


def pools_json(answer: ConnectorPools) -> dict[str, Any]:
    """One connector's answer for the admin API (`error` is empty when it answered)."""
    report = answer.report
    pools = [asdict(pool) for pool in report.pools] if report is not None else None
    truncated = report is not None and report.truncated
    return {"connector_id": answer.connector_id, "pools": pools, "truncated": truncated, "error": answer.error}


async def connector_pools(router: Router, tunnel_id: str, timeout: float = ASK_TIMEOUT) -> list[ConnectorPools]:
    """The pool state of each connector of the tunnel with a session on this edge."""
    connectors = router.by_connector(tunnel_id, FEATURE_STATUS)
    answers: dict[str, ConnectorPools] = {}

    async def ask_one(connector_id: str, session: TunnelConnection) -> None:
        error = f"no answer within {timeout:g} s"
        with trio.move_on_after(timeout):
            try:
                answers[connector_id] = ConnectorPools(connector_id, await ask(session))
                return
            except (BurrowError, ValueError, trio.BrokenResourceError) as exc:
                error = str(exc) or type(exc).__name__
        log.info("pools.unanswered connector=%s error=%s", connector_id, error)
        answers[connector_id] = ConnectorPools(connector_id, None, error)

    async with trio.open_nursery() as nursery:
        for connector_id, session in connectors.items():
            if session is None:
                answers[connector_id] = ConnectorPools(connector_id, None, TOO_OLD)
            else:
                nursery.start_soon(ask_one, connector_id, session)
    return [answers[connector_id] for connector_id in connectors]


async def ask(session: TunnelConnection) -> PoolReport:
    """One `status` stream on `session`: the connector's pool report."""
    head = RequestHead(b"GET", pool_status.STATUS_TARGET, b"", b"https")
    async with await session.open_stream(head, KIND_STATUS) as stream:
        response = await stream.receive_response()
        if response.status != 200:
            raise ValueError(f"the connector answered {response.status}")
        body = b""
        while chunk := await stream.receive():
            body += chunk
            if len(body) > pool_status.MAX_STATUS_BYTES:
                raise ValueError(f"pool status over {pool_status.MAX_STATUS_BYTES} bytes")
    return pool_status.decode(body)
