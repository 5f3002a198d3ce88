"""The edge's authoritative DNS server: a thin trio UDP/TCP shell around `answer()`.

UDP queries go through the `AnswerCache`; each UDP reply leaves from the address its
query was sent to (`pktinfo`). Datagrams already waiting are answered in batches, with one
scheduling step per batch rather than two per datagram.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Mapping

import trio

from edge.dns import pktinfo
from edge.dns.answer import answer, rcode_name
from edge.dns.answer_cache import AnswerCache
from edge.dns.zone import Zones

log = logging.getLogger(__name__)

MAX_QUERY_SIZE = 4096  # larger queries are dropped (UDP) or end the connection (TCP)
TCP_IDLE_TIMEOUT = 10.0
MAX_TCP_CONNECTIONS = 256
TCP_BACKLOG = 128
BIND_ATTEMPTS = 5  # port 0: the TCP port picked by the kernel may be taken for UDP
UDP_BATCH = 64  # datagrams answered per scheduling step while more are waiting


class DnsServer:
    """UDP and TCP listeners on one port, answering from `zones()` read per TCP query or UDP batch."""

    def __init__(
        self,
        zones: Callable[[], Zones],
        addresses: tuple[str, ...],
        on_reply: Callable[[str, int], None] | None = None,
        challenge_txt: Mapping[str, list[str]] = {},
    ) -> None:
        self._zones = zones
        self._challenge_txt = challenge_txt  # ACME DNS-01 answers, read per query
        self._addresses = tuple(addresses)
        self._cache = AnswerCache(self._addresses)  # UDP replies, kept per snapshot
        self._tcp_slots = trio.CapacityLimiter(MAX_TCP_CONNECTIONS)
        self._on_reply = on_reply  # called with an RCODE name and how many replies had it (metrics)

    def set_addresses(self, addresses: tuple[str, ...]) -> None:
        """Answer the apex, `ns1` and tunnel targets with these addresses from now on (the live edges)."""
        self._addresses = tuple(addresses)
        self._cache = AnswerCache(self._addresses)

    def _reply(self, query: bytes, zones: Zones, *, tcp: bool) -> bytes | None:
        """The reply to `query`, or None; not counted in the metrics."""
        try:
            if tcp:
                return answer(query, zones, self._addresses, tcp=True, challenge_txt=self._challenge_txt)
            return self._cache.reply(query, zones, self._challenge_txt)
        except Exception:  # a bug must not take the edge down with it; it is logged loudly
            log.exception("dns.internal_error size=%d", len(query))
            return None

    def _count(self, tally: dict[str, int]) -> None:
        if self._on_reply is not None:
            for rcode, count in tally.items():
                self._on_reply(rcode, count)

    async def serve(self, listen: tuple[str, int], bound: tuple | None = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled (on `listen`, or on the UDP and TCP sockets `bound` already);
        `started()` reports the bound (host, port), the same for UDP and TCP."""
        udp, tcp = bound if bound is not None else await open_sockets(*listen)
        with udp, tcp:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_udp, udp)
                listener = trio.SocketListener(trio.socket.from_stdlib_socket(tcp))
                nursery.start_soon(trio.serve_listeners, self._handle_tcp, [listener])
                host, port, *_ = udp.getsockname()
                log.info("dns.listening address=%s port=%d", host, port)
                task_status.started((host, port))

    async def _serve_udp(self, sock: socket.socket) -> None:
        while True:
            await trio.lowlevel.wait_readable(sock)
            while self._answer_waiting(sock) == UDP_BATCH:
                await trio.lowlevel.checkpoint()  # more may be waiting: the other tasks run first

    def _answer_waiting(self, sock: socket.socket) -> int:
        """Answer up to UDP_BATCH datagrams already received; how many there were.

        A reply the socket cannot take at once is dropped, as a full network would
        (the client asks again)."""
        tally: dict[str, int] = {}
        handled, zones, receive, send = 0, self._zones(), sock.recvmsg, sock.sendmsg  # no task runs during a batch
        while handled < UDP_BATCH:
            try:
                query, received, _, peer = receive(MAX_QUERY_SIZE + 1, pktinfo.ANCILLARY_SIZE)
            except BlockingIOError:
                break
            handled += 1
            reply = self._reply(query, zones, tcp=False) if len(query) <= MAX_QUERY_SIZE else None
            if reply is None:
                continue
            rcode = rcode_name(reply)
            tally[rcode] = tally.get(rcode, 0) + 1
            try:
                send([reply], pktinfo.reply_source(received), 0, peer)
            except OSError as exc:
                log.debug("dns.udp_send_failed peer=%s error=%s", peer[0], exc)
        self._count(tally)
        return handled

    async def _handle_tcp(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                self._tcp_slots.acquire_nowait()
            except trio.WouldBlock:
                log.warning("dns.tcp_refused reason=too_many_connections limit=%d", MAX_TCP_CONNECTIONS)
                return
            try:
                await self._tcp_session(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the client went away
            finally:
                self._tcp_slots.release()

    async def _tcp_session(self, stream: trio.SocketStream) -> None:
        """RFC 7766 framing: a 2-byte length, then the message. Each exchange must finish
        within TCP_IDLE_TIMEOUT of the previous one, or the connection ends."""
        buffer = bytearray()
        while True:
            with trio.move_on_after(TCP_IDLE_TIMEOUT) as idle:
                size = await _receive_exactly(stream, buffer, 2)
                length = int.from_bytes(size, "big") if size else 0
                query = await _receive_exactly(stream, buffer, length) if 0 < length <= MAX_QUERY_SIZE else None
                reply = self._reply(query, self._zones(), tcp=True) if query else None
                if reply:
                    self._count({rcode_name(reply): 1})
                    await stream.send_all(len(reply).to_bytes(2, "big") + reply)
            if idle.cancelled_caught or query is None:
                return


async def _receive_exactly(stream: trio.SocketStream, buffer: bytearray, size: int) -> bytes | None:
    """`size` bytes from `buffer` then `stream`; None at end of stream."""
    while len(buffer) < size:
        chunk = await stream.receive_some(MAX_QUERY_SIZE)
        if not chunk:
            return None
        buffer += chunk
    data = bytes(buffer[:size])
    del buffer[:size]
    return data


async def open_sockets(host: str, port: int, attempts: int = BIND_ATTEMPTS) -> tuple[socket.socket, socket.socket]:
    """A UDP socket and a listening TCP socket on the same port; host "" is every address (dual stack).
    For port 0 the kernel picks the TCP port (it avoids ports that client connections, even
    in TIME_WAIT, still hold; a UDP pick does not), then UDP takes the same number."""
    tcp = await _bind(socket.SOCK_STREAM, host, port)
    try:
        udp = await _bind(socket.SOCK_DGRAM, host, tcp.getsockname()[1])
    except OSError as exc:
        tcp.close()
        if port == 0 and exc.errno == errno.EADDRINUSE and attempts > 1:
            return await open_sockets(host, port, attempts - 1)
        raise
    tcp.listen(TCP_BACKLOG)
    return udp, tcp


async def _bind(kind: int, host: str, port: int) -> socket.socket:
    """A non-blocking socket bound to (host, port)."""
    if host:
        family, *_, address = (await trio.socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE))[0]
    else:
        family, address = (socket.AF_INET6, ("::", port)) if socket.has_ipv6 else (socket.AF_INET, ("0.0.0.0", port))
    sock = socket.socket(family, kind)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6 and not host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        else:
            sock.setsockopt(*pktinfo.receive_option(family), 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
