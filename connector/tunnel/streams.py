"""Serve one edge-opened stream: match the ingress rule, answer from its service,
then count it (metrics) and log it (`connector.access_log`), once whatever happened.

`StreamServer.ingress` is one reference, read once per request: a reload swaps it
and requests in flight finish with the rules they started with.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, cast

import trio

from connector.access.verifier import access_admits
from connector.ingress.rules import Ingress, Rule, normalize_host
from connector.ingress.services import (
    HelloWorldService,
    HttpService,
    PoolService,
    StatusService,
    TcpService,
    UnixService,
)
from connector.origins.balancer import Balancers
from connector.origins.errors import NoHealthyOrigin
from connector.origins.hello import hello_page
from connector.origins.http1 import OriginBound, OriginPool
from connector.origins.http2 import forward_h2
from connector.origins.private import PrivateDialer
from connector.origins.proxy_protocol import Address
from connector.origins.public_ports import serve_port
from connector.origins.upgrade import serve_upgrade, upgrade_token, wants_upgrade
from connector.tunnel.metrics import ConnectorMetrics
from connector.tunnel.status import serve_status
from shared.config import WarpRouting
from shared.errors import BurrowError, ProtocolError
from shared.events import RequestHead, ResponseHead
from shared.logs import CONNECTOR_ACCESS_LOGGER, log_access
from shared.pages import error_page
from shared.protocol import KIND_PRIVATE, KIND_STATUS, PORT_KINDS
from shared.tunnel_stream import TunnelStream

log = logging.getLogger(__name__)
access_log = logging.getLogger(CONNECTOR_ACCESS_LOGGER)  # one line a request, at INFO
REQUEST_ID = b"burrow-request-id"
CONNECTING_IP, CONNECTING_PORT = b"burrow-connecting-ip", b"burrow-connecting-port"


class StreamServer:
    """Answers tunnel streams according to the ingress rules."""

    def __init__(
        self, ingress: Ingress, pool: OriginPool | None = None, access=None, metrics: ConnectorMetrics | None = None,
        private: PrivateDialer | None = None,
    ) -> None:
        self.access = access  # connector.access_jwt.AccessVerifier for `originRequest.access.required`
        self.private = private if private is not None else PrivateDialer(WarpRouting())  # `warp-routing` flows
        self.balancers = Balancers()  # of the rules' pools; `balancers.run()` runs their health checks
        self.ingress = ingress
        self.pool = pool or OriginPool()
        self.metrics = metrics
        self.in_flight = 0  # streams being served (counted while metrics or the access log are on)
        if metrics is not None:
            metrics.watch_requests(lambda: self.in_flight)
            metrics.watch_pools(self.balancers)

    @property
    def ingress(self) -> Ingress:
        return self._ingress

    @ingress.setter
    def ingress(self, ingress: Ingress) -> None:
        """New rules (a reload): their pools' balancers follow."""
        self._ingress = ingress
        self.balancers.update(ingress.pools)

    async def serve(self, stream: TunnelStream) -> None:
        if stream.kind == KIND_PRIVATE:
            await self.private.serve(stream)
            return
        if stream.kind == KIND_STATUS:  # the edge asks for the pools' state
            await serve_status(stream, self.balancers)
            return
        if stream.kind in PORT_KINDS:  # a visitor on a public TCP or UDP port
            ingress = self.ingress
            await serve_port(stream, ingress.tcp, ingress.udp)
            return
        head = stream.head
        rule = self.ingress.match(head.authority.decode("latin-1"), head.target.decode("latin-1"))
        if self.metrics is None and not access_log.isEnabledFor(logging.INFO):
            await self._answer(stream, rule)
            return
        started = time.monotonic()
        self.in_flight += 1
        try:
            await self._answer(stream, rule)
        finally:  # also when the visitor went away or the session ended: status 0 if nothing was sent
            self.in_flight -= 1
            self._finished(stream, rule, time.monotonic() - started)

    def _finished(self, stream: TunnelStream, rule: Rule, seconds: float) -> None:
        head, status = stream.head, stream.response_status
        host = normalize_host(head.authority.decode("latin-1"))
        if self.metrics is not None:
            self.metrics.http.observe(host, status, seconds, stream.bytes_received, stream.bytes_sent)
            if status == 101:
                self.metrics.upgraded(host, upgrade_token(head))
        if access_log.isEnabledFor(logging.INFO):
            fields = {
                "host": host, "method": head.method.decode("latin-1"), "path": head.target.decode("latin-1"),
                "status": status, "bytes_in": stream.bytes_received, "bytes_out": stream.bytes_sent,
                "duration_ms": round(seconds * 1000, 1), "rule": rule.index, "origin": str(rule.service),
                "request_id": request_id(stream),
            }
            log_access(access_log, fields)

    async def _answer(self, stream: TunnelStream, rule: Rule) -> None:
        head, service = stream.head, rule.service
        if rule.origin_request.access.required and not await access_admits(stream, rule, self.access):
            return
        if wants_upgrade(stream, service):
            await self._from_origin(stream, rule, upgrade=True)
        elif isinstance(service, StatusService):
            await stream.send_response(ResponseHead(service.code, ((b"content-length", b"0"),), has_body=False))
        elif isinstance(service, HelloWorldService):
            await _send_whole(stream, *hello_page(head))
        elif isinstance(service, (HttpService, UnixService, PoolService)):
            await self._from_origin(stream, rule, upgrade=False)
        else:
            await _send_whole(stream, *error_page(400, "connector", _needs_access(rule, head.authority)))

    async def _from_origin(self, stream: TunnelStream, rule: Rule, upgrade: bool) -> None:
        """Answer from the rule's origin (through its edits), or one of its pool's; when the origin
        fails, count it and answer 502/503/504 if still possible."""
        visitor = visitor_address(stream.head) if rule.origin_request.proxy_protocol else None
        edited = stream if rule.edits is None else rule.edits.wrap(stream)
        try:
            if isinstance(rule.service, PoolService):
                balancer = self.balancers.get(rule.service.name)
                if balancer is None:  # a reload removed it while this request was matched
                    raise NoHealthyOrigin(f"pool {rule.service.name} is no longer configured")
                await balancer.forward(
                    edited, lambda origin: self._forward(edited, replace(rule, service=origin), upgrade, visitor)
                )
            else:
                await self._forward(edited, rule, upgrade, visitor)
        except ProtocolError:
            raise  # the tunnel stream failed (visitor gone, session ended), not the origin
        except (BurrowError, OSError, trio.BrokenResourceError) as exc:
            if self.metrics is not None:
                self.metrics.origin_failed(normalize_host(stream.head.authority.decode("latin-1")), exc)
            if stream.response_sent:
                raise
            log.warning("origin.failed request_id=%s rule=%d error=%s", request_id(stream), rule.index, exc)
            status = exc.http_status if isinstance(exc, BurrowError) else 502
            await _send_whole(stream, *error_page(status, "connector", str(exc)))


    async def _forward(self, stream: OriginBound, rule: Rule, upgrade: bool, visitor: Address | None) -> None:
        if upgrade:
            await serve_upgrade(stream, rule, self.pool, visitor)
        else:
            forward = forward_h2 if rule.origin_request.http2_origin else self.pool.forward
            await forward(stream, cast(Any, rule.service), rule.origin_request, visitor)


def visitor_address(head: RequestHead) -> Address | None:
    """The visitor's IP and port as the edge saw them (port 0 from an edge that does not send it)."""
    ip = head.header(CONNECTING_IP)
    if ip is None:
        return None
    port = head.header(CONNECTING_PORT) or b""
    return ip.decode("latin-1"), int(port) if port.isdigit() else 0


def request_id(stream: TunnelStream) -> str:
    """The edge's `Burrow-Request-Id` for this stream, as the origin receives it."""
    return next((value.decode("latin-1") for name, value in stream.head.headers if name == REQUEST_ID), "-")


def _needs_access(rule: Rule, authority: bytes) -> str:
    service: Any = rule.service  # a TcpService (ssh://, tcp://, …): no HTTP rule reaches here
    host = normalize_host(authority.decode("latin-1"))
    command = "ssh" if service.scheme == "ssh" else "tcp"
    return (
        f"ingress rule {rule.index} serves {service}, a raw {service.scheme.upper()} stream, not HTTP: "
        f"reach it with `burrow access {command} --hostname {host}`"
    )


async def _send_whole(stream: TunnelStream, head: ResponseHead, body: bytes) -> None:
    await stream.send_response(head)
    if head.has_body:
        await stream.send(body)
        await stream.end()
