"""Upgraded streams: WebSocket (any HTTP/1.1 Upgrade) to HTTP origins and `burrow-tcp`
to raw TCP origins. After a 101 the tunnel stream is a byte pipe (`shared.transport.relay`).

An upgrade always gets a fresh origin connection: it never comes from, nor goes
back to, the keep-alive pool.
"""

from __future__ import annotations

import logging

import trio

from connector.ingress.rules import Rule, normalize_host
from connector.ingress.services import HttpService, PoolService, TcpService, UnixService
from connector.origins.connect import open_origin_stream, tls_name, uses_tls
from connector.origins.http1 import OriginPool, _close_quietly
from connector.origins.http1_codec import Request
from connector.origins.proxy_protocol import Address
from shared.events import RequestHead, ResponseHead, end_to_end
from shared.pages import error_page
from shared.protocol import KIND_UPGRADE
from shared.relay import relay
from shared.tunnel_stream import TunnelStream

log = logging.getLogger(__name__)

TCP_UPGRADE = b"burrow-tcp"  # our own Upgrade token, spoken only by `burrow access`


def upgrade_token(head: RequestHead) -> bytes:
    return (head.header(b"upgrade") or b"").strip().lower()


def wants_upgrade(stream: TunnelStream, service: object) -> bool:
    """Does this stream go to `serve_upgrade` rather than the plain request path?"""
    if stream.kind != KIND_UPGRADE:
        return False
    if upgrade_token(stream.head) == TCP_UPGRADE:
        return True  # a TCP origin, or a clear "not a TCP route"
    return isinstance(service, (HttpService, UnixService, PoolService))


async def serve_upgrade(stream: TunnelStream, rule: Rule, pool: OriginPool, visitor: Address | None = None) -> None:
    """Answer an upgrade stream; an origin that fails raises (the caller answers 502/504).
    `visitor`: for proxyProtocol."""
    service = rule.service
    if isinstance(service, TcpService):
        await _tcp(stream, rule, visitor)
    elif upgrade_token(stream.head) == TCP_UPGRADE:
        host = normalize_host(stream.head.authority.decode("latin-1"))
        log.warning("upgrade.not_tcp host=%s rule=%d service=%s", host, rule.index, service)
        await _send_page(stream, 400, f"{host} is not a TCP route: ingress rule {rule.index} serves {service}")
    else:
        await _http(stream, rule, pool, visitor)


async def _tcp(stream: TunnelStream, rule: Rule, visitor: Address | None) -> None:
    service: TcpService = rule.service
    origin = await open_origin_stream(service, rule.origin_request, None, visitor=visitor)
    async with origin:
        await stream.send_response(ResponseHead(101, ((b"connection", b"upgrade"), (b"upgrade", TCP_UPGRADE))))
        log.debug("upgrade.tcp rule=%d origin=%s", rule.index, service)
        await relay(origin, stream)


async def _http(stream: TunnelStream, rule: Rule, pool: OriginPool, visitor: Address | None) -> None:
    head = stream.head
    options = rule.origin_request
    server_name = tls_name(rule.service, options, head) if uses_tls(rule.service) else None
    connection = await pool.connect(rule.service, options, server_name, visitor)
    try:
        await connection.send_request(_upgrade_request(head, options), ended=True, upgrade=True)
        await connection.read_head()
        response = connection.reader
        if response.status == 101:
            await stream.send_response(ResponseHead(101, response.headers))
            await _pipe(connection.stream, stream, response.trailing)
            return
        log.warning(
            "upgrade.refused rule=%d protocol=%s status=%d",
            rule.index, upgrade_token(head).decode("latin-1"), response.status,
        )
        has_body = head.method != b"HEAD" and response.status not in (204, 304)
        await stream.send_response(ResponseHead(response.status, response.headers, has_body=has_body))
        while chunk := await connection.next_body():
            await stream.send(chunk)
        await stream.end()
    finally:
        _close_quietly(connection)


async def _pipe(origin: trio.abc.Stream, stream: TunnelStream, first_down: bytes) -> None:
    if first_down:
        await stream.send(first_down)
    await relay(origin, stream)


def _upgrade_request(head: RequestHead, options) -> Request:
    """The visitor's request with its Upgrade and Connection headers kept."""
    headers = list(end_to_end(head.headers))
    headers += [(b"connection", b"upgrade"), (b"upgrade", head.header(b"upgrade") or b"")]
    if options.http_host_header:
        headers = [(k, v) for k, v in headers if k not in (b"host", b"x-forwarded-host")]
        headers += [(b"host", options.http_host_header.encode()), (b"x-forwarded-host", head.authority)]
    return Request(head.method, head.target, tuple(headers))


async def _send_page(stream: TunnelStream, status: int, message: str) -> None:
    head, body = error_page(status, "connector", message)
    await stream.send_response(head)
    await stream.send(body)
    await stream.end()
