"""`burrow access socks`: a local SOCKS5 proxy whose every flow goes through the edge to the connector
that routes its address (`burrow tunnel route ip`), which dials it from its own network.

CONNECT: one `burrow-private` upgrade to the edge per connection, then bytes both ways.
UDP ASSOCIATE: a local UDP relay; each destination gets one upgraded flow carrying
length-prefixed datagrams (`shared.private_flows`), for as long as the control
connection stays open. A refused flow is answered with the reply code the edge or the
connector chose; the reason goes to the log.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import trio
from socksio.socks5 import SOCKS5Command

from connector.access.socks5 import Socks5Server, pack_datagram, parse_datagram
from connector.access.tcp import Target, UpgradeRefused, dial_upgrade, edge_context, listen_locally, splice
from shared import private_flows as flows
from shared.errors import BurrowError, ConfigError, ProtocolError

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # seconds for a SOCKS client's greeting and request
READ_SIZE = 64 * 1024
MAX_UDP_FLOWS = 64  # destinations per UDP association
UDP_QUEUE = 64  # datagrams waiting for one destination's flow; more are dropped, as UDP may
REFUSED_BY_STATUS = {401: flows.NOT_ALLOWED, 403: flows.NOT_ALLOWED}


class FlowRefused(BurrowError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SocksEdge:
    """The edge to send flows to, and the credential headers to show it."""

    target: Target  # hostname: the edge's own name (its API host)
    headers: tuple[tuple[str, bytes], ...]


class SocksProxy:
    def __init__(self, edge: SocksEdge) -> None:
        self.edge = edge
        self.context = edge_context(edge.target)

    async def open_flow(self, target: flows.Target) -> tuple[trio.abc.Stream, bytes]:
        """An upgraded edge connection carrying `target`'s flow; FlowRefused with the reply code otherwise."""
        headers = ((flows.TARGET_HEADER.decode(), target.header()), *self.edge.headers)
        try:
            return await dial_upgrade(self.edge.target, flows.PRIVATE_UPGRADE, headers, self.context)
        except UpgradeRefused as exc:
            default = REFUSED_BY_STATUS.get(exc.status, flows.GENERAL_FAILURE)
            raise FlowRefused(flows.reply_code(exc.headers, default), str(exc)) from None
        except BurrowError as exc:
            raise FlowRefused(flows.GENERAL_FAILURE, str(exc)) from None

    async def serve(self, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await listen_locally(host, port, "--listen")
        bound = listeners[0].socket.getsockname()[1]
        log.info("socks.listening address=%s:%d edge=%s:%d", host, bound, self.edge.target.edge_host, self.edge.target.edge_port)
        task_status.started(bound)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, local: trio.SocketStream) -> None:
        """One SOCKS client connection; a client that goes away mid-way ends only its own flow."""
        try:
            async with local:
                await self._serve_client(local)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("socks.client_gone error=%s", exc)

    async def _serve_client(self, local: trio.SocketStream) -> None:
        server = Socks5Server()
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                request = None
                while request is None:
                    data = await local.receive_some(READ_SIZE)
                    if not data:
                        return
                    request = server.receive_data(data)
                    await local.send_all(bytes(server.out))
                    server.out.clear()
        except (ProtocolError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            if server.out:
                with trio.move_on_after(1):
                    await local.send_all(bytes(server.out))
            log.info("socks.bad_client error=%s", exc or "timed out")
            return
        if request.command == SOCKS5Command.CONNECT:
            await self._connect(local, server, request.host, request.port)
        elif request.command == SOCKS5Command.UDP_ASSOCIATE:
            await self._associate(local, server)
        else:
            await local.send_all(server.reply(flows.COMMAND_NOT_SUPPORTED))

    async def _connect(self, local: trio.SocketStream, server: Socks5Server, host: str, port: int) -> None:
        try:
            target = flows.parse_authority("tcp", flows.Target("tcp", host, port).authority)
            remote, first = await self.open_flow(target)
        except (ConfigError, FlowRefused) as exc:
            code = exc.code if isinstance(exc, FlowRefused) else flows.GENERAL_FAILURE
            log.warning("socks.refused target=tcp:%s:%d reply=%s reason=%s", host, port, flows.SOCKS_REPLIES[code], exc)
            await local.send_all(server.reply(code))
            return
        async with remote:
            await local.send_all(server.reply(flows.SUCCEEDED))
            if server.leftover:
                await remote.send_all(server.leftover)
            await splice(local, remote, first)

    async def _associate(self, local: trio.SocketStream, server: Socks5Server) -> None:
        client_ip, listen_ip = local.socket.getpeername()[0], local.socket.getsockname()[0]
        udp = trio.socket.socket(socket.AF_INET6 if ":" in listen_ip else socket.AF_INET, socket.SOCK_DGRAM)
        with udp:
            await udp.bind((listen_ip, 0))
            bound = udp.getsockname()
            await local.send_all(server.reply(flows.SUCCEEDED, bound[0], bound[1]))
            association = UdpAssociation(self, udp, client_ip)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(association.run, nursery)
                while True:  # the association lives as long as its control connection
                    try:
                        if not await local.receive_some(READ_SIZE):
                            break
                    except trio.BrokenResourceError:
                        break
                nursery.cancel_scope.cancel()


class UdpAssociation:
    """One UDP ASSOCIATE: datagrams from the client, one flow through the edge per destination."""

    def __init__(self, proxy: SocksProxy, udp: trio.socket.SocketType, client_ip: str) -> None:
        self.proxy = proxy
        self.udp = udp
        self.client_ip = client_ip
        self.client: tuple | None = None  # the client's UDP address, learnt from its first datagram
        self.flows: dict[tuple[str, int], trio.MemorySendChannel | None] = {}  # None: refused

    async def run(self, nursery: trio.Nursery) -> None:
        while True:
            data, source = await self.udp.recvfrom(flows.MAX_DATAGRAM + 512)
            if source[0] != self.client_ip or (self.client is not None and source != self.client):
                continue  # only the client that asked may use the relay
            self.client = source
            try:
                host, port, payload = parse_datagram(data)
            except ProtocolError as exc:
                log.debug("socks.udp_dropped error=%s", exc)
                continue
            key = (host, port)
            if key not in self.flows:
                if len(self.flows) >= MAX_UDP_FLOWS:
                    log.warning("socks.udp_dropped reason=more than %d destinations in one association", MAX_UDP_FLOWS)
                    continue
                send, receive = trio.open_memory_channel(UDP_QUEUE)
                self.flows[key] = send
                nursery.start_soon(self._flow, key, receive)
            channel = self.flows[key]
            if channel is not None:
                try:
                    channel.send_nowait(payload)
                except trio.WouldBlock:
                    pass  # the flow is not keeping up: drop, as a network would

    async def _flow(self, key: tuple[str, int], datagrams: trio.MemoryReceiveChannel) -> None:
        host, port = key
        try:
            target = flows.parse_authority("udp", flows.Target("udp", host, port).authority)
            remote, first = await self.proxy.open_flow(target)
        except (ConfigError, FlowRefused) as exc:
            code = exc.code if isinstance(exc, FlowRefused) else flows.GENERAL_FAILURE
            log.warning("socks.refused target=udp:%s:%d reply=%s reason=%s", host, port, flows.SOCKS_REPLIES[code], exc)
            self.flows[key] = None  # later datagrams to it are dropped
            return
        async with remote:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._replies, remote, first, host, port)
                    async for payload in datagrams:
                        await remote.send_all(flows.frame_datagram(payload))
            except* (trio.BrokenResourceError, ProtocolError, OSError) as group:
                log.debug("socks.udp_flow_ended target=%s:%d error=%s", host, port, group.exceptions[0])
            finally:
                self.flows.pop(key, None)

    async def _replies(self, remote: trio.abc.Stream, first: bytes, host: str, port: int) -> None:
        reader = flows.DatagramReader()
        data = first
        while True:
            for payload in reader.feed(data):
                await self.udp.sendto(pack_datagram(host, port, payload), self.client)
            data = await remote.receive_some(READ_SIZE)
            if not data:
                raise trio.BrokenResourceError("the edge ended the flow")
