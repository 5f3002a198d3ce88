"""One public UDP port: datagrams from each visitor address and port (a flow) travel on a
tunnel stream of their own (kind `udp`, `shared.datagrams`), so a slow or stalled flow
never delays another; the connector's answers go back from the address the visitor sent
to. A flow ends after `idle_timeout` without a datagram either way.

Memory and work stay bounded: at most `max_flows` flows per port and `queue` datagrams
waiting per flow; a datagram beyond either is dropped, as a full network would, and counted.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

import trio

from edge.dns import pktinfo
from edge.routing.router import Router
from shared import datagrams
from shared.aio import single_errors
from shared.errors import BurrowError
from shared.port_streams import port_head
from shared.protocol import KIND_UDP
from shared.registration import FEATURE_PORTS

log = logging.getLogger(__name__)

ANSWER_TIMEOUT = 75.0  # the connector's answer to a new flow
SOCKET_BUFFER = 4 * 1024 * 1024  # asked for both ways (the kernel caps it at net.core.rmem_max / wmem_max): bursts of many flows
RECEIVE_BATCH = 64  # datagrams taken from the socket before other tasks run
SEND_BATCH = 64  # a flow's queued datagrams written to its stream at once
FAILED_FLOW_HOLD = 1.0  # a flow that found no connector drops its datagrams this long (one log line, not one a datagram)

Address = tuple  # a visitor's socket address


@dataclass(frozen=True)
class FlowLimits:
    idle_timeout: float = 60.0  # `burrow-edge serve --udp-idle-timeout`
    max_flows: int = 1024  # per port
    queue: int = 256  # datagrams waiting per flow for its tunnel stream


class UdpPort:
    """The flows of one public UDP port."""

    def __init__(self, port: int, tunnel_of: Callable[[], str | None], router: Router, limits: FlowLimits) -> None:
        self.port = port
        self.tunnel_of = tunnel_of  # the tunnel the port routes to now
        self.router = router
        self.limits = limits
        self.flows: dict[Address, trio.MemorySendChannel] = {}
        self.dropped = 0  # datagrams dropped on this port (full queue, too many flows, no connector)
        self.started = 0  # flows started
        self.accepting = True  # False while the edge drains: flows open go on, new ones are dropped

    async def serve(self, host: str, scope: trio.CancelScope, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        sock = await _bind(host, self.port)
        with sock:
            task_status.started(scope)
            async with trio.open_nursery() as nursery:
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    while self._dispatch_waiting(sock, nursery) == RECEIVE_BATCH:
                        await trio.lowlevel.checkpoint()  # more may be waiting: the flows run first

    def _dispatch_waiting(self, sock: socket.socket, nursery: trio.Nursery) -> int:
        """Hand up to RECEIVE_BATCH datagrams already received to their flows (starting new
        ones); how many there were. No task runs in between, so no flow waits on another."""
        handled, receive = 0, sock.recvmsg
        while handled < RECEIVE_BATCH:
            try:
                data, ancillary, _, address = receive(datagrams.MAX_DATAGRAM + 1, pktinfo.ANCILLARY_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # an ICMP error for an earlier answer: that visitor is gone
                continue
            handled += 1
            flow = self.flows.get(address)
            if flow is None:
                if not self.accepting or len(self.flows) >= self.limits.max_flows or len(data) > datagrams.MAX_DATAGRAM:
                    self.dropped += 1
                    continue
                flow, queued = trio.open_memory_channel(self.limits.queue)
                self.flows[address] = flow
                self.started += 1
                nursery.start_soon(self._flow, sock, address, pktinfo.reply_source(ancillary), queued)
            try:
                flow.send_nowait(data)
            except (trio.WouldBlock, trio.BrokenResourceError):
                self.dropped += 1
        return handled

    async def _flow(self, sock, address: Address, source: pktinfo.Ancillary, queued: trio.MemoryReceiveChannel) -> None:
        """One flow; whatever goes wrong ends this flow only."""
        peer = address[0]
        try:
            with queued:
                counts = await self._carry(sock, address, source, queued)
                if counts is None:
                    with trio.move_on_after(FAILED_FLOW_HOLD):
                        async for _ in queued:
                            self.dropped += 1
                    return
                log.info("port.flow protocol=udp port=%d peer=%s datagrams_in=%d datagrams_out=%d", self.port, peer, *counts)
        except Exception:
            log.exception("port.crashed protocol=udp port=%d peer=%s", self.port, peer)
        finally:
            self.flows.pop(address, None)

    async def _carry(self, sock, address: Address, source: pktinfo.Ancillary, queued) -> tuple[int, int] | None:
        """Carry the flow until it is idle or the connector ends it; None when it could not start."""
        tunnel_id = self.tunnel_of()
        counts = [0, 0]
        try:
            if tunnel_id is None:
                raise BurrowError("the port is no longer routed")
            connection = self.router.pick(tunnel_id, feature=FEATURE_PORTS)
            stream = await connection.open_stream(port_head("udp", self.port, address[:2]), KIND_UDP)
        except BurrowError as exc:
            log.info("port.refused protocol=udp port=%d peer=%s error=%s", self.port, address[0], exc)
            return None
        idle_timeout = self.limits.idle_timeout
        async with stream:
            try:
                with trio.fail_after(ANSWER_TIMEOUT):
                    response = await stream.receive_response()
                if response.status != 200:
                    log.info("port.refused protocol=udp port=%d peer=%s status=%d", self.port, address[0], response.status)
                    return None
                with trio.CancelScope(deadline=trio.current_time() + idle_timeout) as idle:

                    async def upstream() -> None:
                        async for datagram in queued:  # with those queued behind it: one write
                            batch = [datagrams.pack(datagram)]
                            while len(batch) < SEND_BATCH:
                                try:
                                    batch.append(datagrams.pack(queued.receive_nowait()))
                                except trio.WouldBlock:
                                    break
                            idle.deadline = trio.current_time() + idle_timeout
                            await stream.send(b"".join(batch))
                            counts[0] += len(batch)

                    async def downstream() -> None:
                        reader = datagrams.DatagramReader()
                        while chunk := await stream.receive():
                            idle.deadline = trio.current_time() + idle_timeout
                            for datagram in reader.feed(chunk):
                                try:  # never waits: a reply the socket cannot take now is dropped, as a full network would
                                    sock.sendmsg([datagram], source, 0, address)
                                    counts[1] += 1
                                except OSError:
                                    self.dropped += 1
                        nursery.cancel_scope.cancel()  # the connector ended the flow

                    with single_errors():
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(upstream)
                            nursery.start_soon(downstream)
            except (BurrowError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                log.info("port.failed protocol=udp port=%d peer=%s error=%s", self.port, address[0], exc or type(exc).__name__)
        return counts[0], counts[1]


async def _bind(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket on (host, port) that reports each datagram's destination; host "" is every address."""
    if host:
        family, *_, address = (await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE))[0]
    else:
        family, address = (socket.AF_INET6, ("::", port)) if socket.has_ipv6 else (socket.AF_INET, ("0.0.0.0", port))
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6 and not host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(*pktinfo.receive_option(family), 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
