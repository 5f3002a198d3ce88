"""Answer the edge's `status` stream: the state of the connector's origin pools as JSON
(`shared.pool_status`), for the edge's dashboard and admin API."""

from __future__ import annotations

from connector.origins.balancer import Balancers
from shared import pool_status
from shared.events import ResponseHead
from shared.tunnel_stream import TunnelStream


async def serve_status(stream: TunnelStream, balancers: Balancers) -> None:
    if stream.head.target != pool_status.STATUS_TARGET:
        await stream.send_response(ResponseHead(404, ((b"content-length", b"0"),), has_body=False))
        return
    body = pool_status.encode([balancer.state() for balancer in balancers])
    await stream.send_response(
        ResponseHead(200, ((b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())))
    )
    await stream.send(body)
    await stream.end()
