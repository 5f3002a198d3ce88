"""The connector's end of private-network flows (`warp-routing`): dial the address the edge names,
from this machine's network, and pipe the flow's bytes (TCP) or datagrams (UDP).

The edge sends a `private` stream only to connectors that registered with
warp-routing, and names the networks the flow may reach (`Burrow-Private-Networks`):
the connector refuses anything outside them, hostnames resolved included. Every
refusal carries its SOCKS5 reply code (`shared.private_flows`).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

import trio

from shared import private_flows as flows
from shared.aio import single_errors
from shared.config import WarpRouting
from shared.errors import ConfigError, ProtocolError
from shared.events import ResponseHead
from shared.relay import relay
from shared.tunnel_stream import TunnelStream

log = logging.getLogger(__name__)

DIAL_TIMEOUT = 10.0  # seconds to connect to a private TCP address
RESOLVE_TIMEOUT = 5.0  # seconds for the connector's resolver (warp-routing.resolveNames)
UDP_IDLE_TIMEOUT = 60.0  # a UDP flow with no datagram either way for this long ends
DIAL_ERRORS = {  # errno → SOCKS5 reply code
    errno.ECONNREFUSED: flows.CONNECTION_REFUSED,
    errno.ENETUNREACH: flows.NETWORK_UNREACHABLE,
    errno.EHOSTUNREACH: flows.HOST_UNREACHABLE,
    errno.ETIMEDOUT: flows.TTL_EXPIRED,
}


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class PrivateDialer:
    """Serves `private` streams according to config.yml `warp-routing`."""

    def __init__(self, warp: WarpRouting) -> None:
        self.warp = warp

    async def serve(self, stream: TunnelStream) -> None:
        try:
            target, allowed = self._check(stream)
            addresses = await self._addresses(target, allowed)
            if target.protocol == "tcp":
                peer = await _dial_tcp(addresses, target.port)
            else:
                peer = await _dial_udp(addresses, target.port)
        except Refused as exc:
            log.info("private.refused target=%s reply=%s reason=%s",
                     stream.head.authority.decode("latin-1"), flows.SOCKS_REPLIES[exc.code], exc)  # fmt: skip
            await _refuse(stream, exc)
            return
        log.debug("private.open target=%s protocol=%s", target.authority, target.protocol)
        await stream.send_response(ResponseHead(200, (), has_body=True))
        if target.protocol == "tcp":
            async with peer:
                await relay(peer, stream)
        else:
            with peer:
                await _pump_datagrams(peer, stream)

    def _check(self, stream: TunnelStream) -> tuple[flows.Target, list]:
        if not self.warp.enabled:
            raise Refused(flows.NETWORK_UNREACHABLE, "this connector does not serve private networks (warp-routing)")
        head = stream.head
        try:
            target = flows.parse_authority(head.method.decode("latin-1").lower(), head.authority.decode("latin-1"))
            allowed = [ipaddress.ip_network(text) for text in (head.header(flows.NETWORKS_HEADER) or b"").decode().split(",") if text]
        except (ConfigError, ValueError) as exc:
            raise Refused(flows.GENERAL_FAILURE, str(exc)) from None
        if target.ip is None and not self.warp.resolve_names:
            raise Refused(flows.ADDRESS_TYPE_NOT_SUPPORTED,
                          f"{target.host}: this connector does not resolve hostnames (warp-routing.resolveNames)")  # fmt: skip
        return target, allowed

    async def _addresses(self, target: flows.Target, allowed: list) -> list[str]:
        """The target's addresses (resolved here for a name) inside the networks the flow may reach."""
        if target.ip is not None:
            candidates = [target.ip]
        else:
            kind = socket.SOCK_STREAM if target.protocol == "tcp" else socket.SOCK_DGRAM
            try:
                with trio.fail_after(RESOLVE_TIMEOUT):
                    infos = await trio.socket.getaddrinfo(target.host, target.port, type=kind)
            except (OSError, trio.TooSlowError) as exc:
                raise Refused(flows.HOST_UNREACHABLE, f"cannot resolve {target.host}: {exc or 'timed out'}") from None
            candidates = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        inside = [str(ip) for ip in candidates if any(ip.version == net.version and ip in net for net in allowed)]
        if not inside:
            raise Refused(flows.NOT_ALLOWED, f"{target.host} is outside the networks this flow may reach")
        return inside


async def _dial_tcp(addresses: list[str], port: int) -> trio.SocketStream:
    """A TCP connection to the first of `addresses` that answers."""
    error: Refused | None = None
    for address in addresses:
        sock = trio.socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        try:
            with trio.fail_after(DIAL_TIMEOUT):
                await sock.connect((address, port))
            return trio.SocketStream(sock)
        except trio.TooSlowError:
            error = Refused(flows.TTL_EXPIRED, f"connecting to {address}:{port} timed out")
        except OSError as exc:
            error = Refused(DIAL_ERRORS.get(exc.errno, flows.GENERAL_FAILURE), f"cannot connect to {address}:{port}: {exc.strerror or exc}")
        sock.close()
    raise error


async def _dial_udp(addresses: list[str], port: int) -> trio.socket.SocketType:
    address = addresses[0]
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_DGRAM)
    try:
        await sock.connect((address, port))
    except OSError as exc:
        sock.close()
        raise Refused(DIAL_ERRORS.get(exc.errno, flows.GENERAL_FAILURE), f"cannot reach {address}:{port}: {exc.strerror or exc}") from None
    return sock


async def _pump_datagrams(sock: trio.socket.SocketType, stream: TunnelStream) -> None:
    """Datagrams both ways until the client ends the stream or the flow is idle for `UDP_IDLE_TIMEOUT`."""
    with trio.CancelScope(deadline=trio.current_time() + UDP_IDLE_TIMEOUT) as idle:

        async def outbound() -> None:
            reader = flows.DatagramReader()
            while chunk := await stream.receive():
                for datagram in reader.feed(chunk):
                    idle.deadline = trio.current_time() + UDP_IDLE_TIMEOUT
                    await sock.send(datagram)
            nursery.cancel_scope.cancel()

        async def inbound() -> None:
            while True:
                try:
                    datagram = await sock.recv(flows.MAX_DATAGRAM)
                except ConnectionRefusedError:  # an ICMP port unreachable: the next datagram may still get through
                    continue
                idle.deadline = trio.current_time() + UDP_IDLE_TIMEOUT
                await stream.send(flows.frame_datagram(datagram))

        try:
            with single_errors():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(outbound)
                    nursery.start_soon(inbound)
        except (ProtocolError, OSError) as exc:
            log.debug("private.udp_ended stream=%d error=%s", stream.stream_id, exc)
    if not stream.local_closed and stream._error is None:
        with trio.move_on_after(1.0):
            await stream.end()


async def _refuse(stream: TunnelStream, refused: Refused) -> None:
    head = ResponseHead(
        flows.REPLY_STATUS[refused.code],
        ((flows.REPLY_HEADER, str(refused.code).encode()), (b"content-type", b"text/plain; charset=utf-8")),
        has_body=True,
    )
    await stream.send_response(head)
    await stream.send(str(refused).encode())
    await stream.end()
