"""Serve a public-port stream (kinds `tcp` and `udp`) from the config's `tcp:` / `udp:` routes.

TCP: connect to the origin (with `proxyProtocol`, the visitor's address first), answer
200, then pipe bytes both ways, half-closes included. UDP: one connected UDP socket per
flow; datagrams go out as they come (`shared.datagrams`), answers come back on the
stream. Anything else is answered with an error status and a one-line reason.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping

import trio

from connector.ingress.ports import PortRoute
from connector.origins.connect import open_origin_stream
from connector.origins.proxy_protocol import Address
from shared import datagrams
from shared.aio import single_errors
from shared.errors import BurrowError, ProtocolError
from shared.events import RequestHead, ResponseHead
from shared.port_streams import CONNECTING_IP, CONNECTING_PORT, port_of
from shared.protocol import KIND_TCP
from shared.relay import relay
from shared.tunnel_stream import TunnelStream

log = logging.getLogger(__name__)

UDP_IDLE_TIMEOUT = 300.0  # a flow the edge forgot to end (its own idle timeout is shorter) is closed after this
UDP_RESOLVE_TIMEOUT = 10.0
RECEIVE_BATCH = 64  # the origin's datagrams written to the stream at once


async def serve_port(stream: TunnelStream, tcp: Mapping[int, PortRoute], udp: Mapping[int, PortRoute]) -> None:
    """Answer one port stream with the route its port has in `tcp` or `udp`."""
    protocol = "tcp" if stream.kind == KIND_TCP else "udp"
    port = port_of(stream.head)
    route = (tcp if protocol == "tcp" else udp).get(port) if port is not None else None
    if route is None:
        log.warning("port.unconfigured protocol=%s port=%s", protocol, port)
        await _refuse(stream, 404, f"this connector's config.yml has no {protocol}: entry for port {port}")
        return
    visitor = _visitor(stream.head)
    try:
        if protocol == "tcp":
            await _tcp(stream, route, visitor)
        else:
            await _udp(stream, route)
    except ProtocolError:
        raise  # the tunnel stream failed (visitor gone, session ended), not the origin
    except (BurrowError, OSError, trio.TooSlowError) as exc:
        log.warning("port.origin_failed protocol=%s port=%d origin=%s error=%s", protocol, port, route.service, exc)
        if not stream.response_sent:
            await _refuse(stream, 502, f"origin {route.service} failed: {exc or type(exc).__name__}")


async def _tcp(stream: TunnelStream, route: PortRoute, visitor: Address | None) -> None:
    origin = await open_origin_stream(route.service, route.origin_request, None, visitor=visitor)
    async with origin:
        await stream.send_response(ResponseHead(200))
        await relay(origin, stream)


async def _udp(stream: TunnelStream, route: PortRoute) -> None:
    service = route.service
    with trio.fail_after(UDP_RESOLVE_TIMEOUT):
        family, _, _, _, address = (await trio.socket.getaddrinfo(service.host, service.port, type=socket.SOCK_DGRAM))[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(address)  # a numeric address: no wait
        await stream.send_response(ResponseHead(200))
        with trio.move_on_after(UDP_IDLE_TIMEOUT) as idle:

            async def to_origin() -> None:
                reader = datagrams.DatagramReader()
                while chunk := await stream.receive():
                    idle.deadline = trio.current_time() + UDP_IDLE_TIMEOUT
                    for datagram in reader.feed(chunk):
                        try:  # never waits: what the socket cannot take now is dropped, as a full network would
                            sock.send(datagram)
                        except OSError:  # also ECONNREFUSED left by an earlier datagram
                            pass
                nursery.cancel_scope.cancel()

            async def from_origin() -> None:
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    if batch := _received(sock):
                        idle.deadline = trio.current_time() + UDP_IDLE_TIMEOUT
                        await stream.send(b"".join(batch))

            with single_errors():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(to_origin)
                    nursery.start_soon(from_origin)
        if not stream.local_closed:
            await stream.end()


def _received(sock: socket.socket) -> list[bytes]:
    """Up to RECEIVE_BATCH datagrams already received, each framed for the stream."""
    batch: list[bytes] = []
    while len(batch) < RECEIVE_BATCH:
        try:
            batch.append(datagrams.pack(sock.recv(datagrams.MAX_DATAGRAM)))
        except (BlockingIOError, InterruptedError):
            break
        except OSError:  # ICMP port unreachable: nothing listens (yet); the flow stays
            continue
    return batch


def _visitor(head: RequestHead) -> Address | None:
    ip, port = head.header(CONNECTING_IP), head.header(CONNECTING_PORT) or b""
    if ip is None:
        return None
    return ip.decode("latin-1"), int(port) if port.isdigit() else 0


async def _refuse(stream: TunnelStream, status: int, reason: str) -> None:
    await stream.send_response(ResponseHead(status, ((b"content-type", b"text/plain"),)))
    await stream.send(reason.encode()[:1024])
    await stream.end()
