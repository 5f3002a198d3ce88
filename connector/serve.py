"""Serve one edge-opened stream: match the ingress rule, answer from its service."""

from __future__ import annotations

import logging

import trio

from connector.ingress import HelloWorldService, HttpService, Ingress, StatusService, UnixService
from connector.origin import OriginOptions, OriginPool
from shared.errors import BurrowError
from shared.events import ResponseHead
from shared.pages import error_page
from shared.transport import TunnelStream

log = logging.getLogger(__name__)

HELLO_BODY = b"Hello from Burrow! This tunnel works.\n"


class StreamServer:
    """Answers tunnel streams according to the ingress rules."""

    def __init__(self, ingress: Ingress, pool: OriginPool | None = None) -> None:
        self.ingress = ingress
        self.pool = pool or OriginPool()
        self._options = {id(rule): OriginOptions.from_config(rule.origin_request) for rule in ingress.rules}

    async def serve(self, stream: TunnelStream) -> None:
        head = stream.head
        rule = self.ingress.match(head.authority.decode("latin-1"), head.target.decode("latin-1"))
        service = rule.service
        log.debug("stream.routed host=%s rule=%d", head.authority.decode("latin-1"), rule.index)
        if isinstance(service, StatusService):
            await stream.send_response(ResponseHead(service.code, ((b"content-length", b"0"),), has_body=False))
        elif isinstance(service, HelloWorldService):
            await _send_whole(stream, ResponseHead(200, ((b"content-type", b"text/plain"),)), HELLO_BODY)
        elif isinstance(service, (HttpService, UnixService)):
            await self._forward(stream, service, self._options[id(rule)])
        else:
            await _send_whole(stream, *error_page(502, "connector", f"rule {rule.index} serves no HTTP"))

    async def _forward(self, stream: TunnelStream, service, options: OriginOptions) -> None:
        try:
            await self.pool.forward(stream, service, options)
        except (BurrowError, OSError, trio.BrokenResourceError) as exc:
            if stream.response_sent:
                raise
            log.warning("origin.failed error=%s", exc)
            await _send_whole(stream, *error_page(502, "connector", str(exc)))


async def _send_whole(stream: TunnelStream, head: ResponseHead, body: bytes) -> None:
    await stream.send_response(head)
    await stream.send(body)
    await stream.end()
