"""A StreamServer behind a real tunnel pair (in memory), driven from the edge side."""

from __future__ import annotations

import functools

import trio
import trio.testing

from connector.ingress.rules import Ingress
from connector.tunnel.metrics import ConnectorMetrics
from connector.tunnel.streams import StreamServer
from shared import protocol
from shared.events import RequestHead
from shared.transport import TunnelConnection


async def start(nursery, rules: list[dict], handler=None) -> tuple[TunnelConnection, StreamServer, ConnectorMetrics]:
    """An edge-side connection whose streams a metered StreamServer serves (through `handler(server, stream)`)."""
    metrics = ConnectorMetrics()
    server = StreamServer(Ingress.from_rules(rules), metrics=metrics)
    edge_side, connector_side = trio.testing.memory_stream_pair()
    edge = TunnelConnection(edge_side, protocol.TunnelSession("edge"))
    connector = TunnelConnection(connector_side, protocol.TunnelSession("connector"))
    nursery.start_soon(edge.serve)
    nursery.start_soon(connector.serve, functools.partial(handler, server) if handler else server.serve)
    return edge, server, metrics


async def fetch(edge: TunnelConnection, head: RequestHead) -> tuple[int, bytes]:
    async with await edge.open_stream(head) as stream:
        response = await stream.receive_response()
        body = bytearray()
        while chunk := await stream.receive():
            body += chunk
    return response.status, bytes(body)
