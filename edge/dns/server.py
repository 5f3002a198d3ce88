"""The edge's authoritative DNS: a pure `answer()` on dnslib records and a thin trio UDP/TCP shell.

`answer()` reads the same `Zones` snapshot the router uses, so DNS and routing
never disagree. Authoritative only: `aa` set, `ra` never, no recursion.

* apex: SOA, NS (`ns1.<zone>`), A/AAAA = the edge's public addresses; `ns1.<zone>`: A/AAAA.
* a routed name (exact or through a wildcard, synthesized with the query name):
  CNAME `<uuid>.tunnels.<zone>`, plus the target's A/AAAA when A/AAAA was asked.
* `<uuid>.tunnels.<zone>`: A/AAAA while the tunnel exists, NXDOMAIN otherwise.
* TXT from the snapshot; ANY gets one RRset (RFC 8482).
* pending ACME DNS-01 answers (`_acme-challenge.<name>` TXT, from `challenge_txt`)
  come before every other record at that name.
* no data of the type: NODATA; unknown name: NXDOMAIN; both with the SOA in
  authority. Outside every zone: REFUSED. Not a QUERY: NOTIMP. Unparseable: FORMERR.
* over UDP an answer above 512 bytes (or the client's EDNS0 size, at most 1232)
  is truncated with TC set; TCP carries it whole.

The shell sends each UDP reply from the address its query was sent to (`pktinfo`).
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from collections.abc import Callable, Mapping

import trio
from dnslib import AAAA, CLASS, CNAME, EDNS0, NS, OPCODE, QTYPE, RCODE, RR, SOA, TXT, A, DNSError, DNSHeader, DNSLabel, DNSRecord

from edge.dns import pktinfo
from edge.dns.zone import NS_LABEL, Zone, Zones

log = logging.getLogger(__name__)

RECORD_TTL = 300
NEGATIVE_TTL = 60  # SOA minimum and the SOA's TTL in negative answers (RFC 2308)
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 3600, 600, 1_209_600
HOSTMASTER_LABEL = "hostmaster"

HEADER_SIZE = 12
BADVERS = 16  # RFC 6891 extended RCODE (not in dnslib's table)
CLASSIC_UDP_SIZE = 512
MAX_UDP_SIZE = 1232  # DNS flag day 2020: the largest UDP answer we send, whatever the client says
MAX_TCP_SIZE = 65535
MAX_QUERY_SIZE = 4096  # larger queries are dropped (UDP) or end the connection (TCP)
MAX_CNAME_CHAIN = 8
TCP_IDLE_TIMEOUT = 10.0
MAX_TCP_CONNECTIONS = 256
TCP_BACKLOG = 128
BIND_ATTEMPTS = 5  # port 0: the UDP port picked by the kernel may be taken for TCP

# What dnslib 0.9.26's parser raises on hostile input (found by fuzzing): its own
# DNSError, UnicodeDecodeError (CAA), RecursionError on long compression-pointer chains
# (which the section counts, checked before parsing, keep short).
PARSE_ERRORS = (DNSError, RecursionError, UnicodeDecodeError)
ADDRESS_TYPES = (QTYPE.A, QTYPE.AAAA)
NO_TRANSFER = (QTYPE.AXFR, QTYPE.IXFR)
LDH_STAR = b"abcdefghijklmnopqrstuvwxyz0123456789-_*"

Node = dict[int, list]  # qtype → rdata at one name; {} is a name with no data (empty non-terminal)


# ---------------------------------------------------------------------------
# Pure core


def answer(
    query: bytes, zones: Zones, addresses: tuple[str, ...], *, tcp: bool = False, challenge_txt: Mapping[str, list[str]] = {}
) -> bytes | None:
    """The reply to one DNS message, or None when it deserves none (a response, or no header)."""
    if len(query) < HEADER_SIZE:
        return None
    ident, flags, *counts = struct.unpack_from("!6H", query)
    opcode, rd = (flags >> 11) & 0xF, (flags >> 8) & 1
    if flags & 0x8000:  # QR: a response, never answered (no loops between servers)
        return None
    if opcode != OPCODE.QUERY:
        return _header_only(ident, opcode, rd, RCODE.NOTIMP)
    # One question, no answers, at most one additional record (OPT): checked before parsing,
    # since dnslib's cost grows with the square of the names a message chains together.
    if counts[:3] != [1, 0, 0] or counts[3] > 1:
        return _header_only(ident, opcode, rd, RCODE.FORMERR)
    try:
        request = DNSRecord.parse(query)
    except PARSE_ERRORS:
        return _header_only(ident, opcode, rd, RCODE.FORMERR)
    opts = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
    reply = DNSRecord(DNSHeader(id=ident, qr=1, rd=rd), q=request.q)
    if opts and (opts[0].ttl >> 16) & 0xFF:  # EDNS version above 0
        reply.add_ar(EDNS0(udp_len=MAX_UDP_SIZE, ext_rcode=BADVERS >> 4))
        return reply.pack()
    _resolve(reply, zones, addresses, challenge_txt)
    if opts:
        reply.add_ar(EDNS0(udp_len=MAX_UDP_SIZE))
    data = reply.pack()
    if len(data) <= _size_limit(opts[0] if opts else None, tcp):
        return data
    reply.header.tc = 1
    reply.rr, reply.auth = [], []
    reply.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    return reply.pack()


def _size_limit(opt: RR | None, tcp: bool) -> int:
    if tcp:
        return MAX_TCP_SIZE
    return min(max(opt.rclass, CLASSIC_UDP_SIZE), MAX_UDP_SIZE) if opt else CLASSIC_UDP_SIZE


def rcode_name(reply: bytes) -> str:
    """The RCODE of a packed reply by name: "NOERROR", "NXDOMAIN", "REFUSED"… (header bits only)."""
    rcode = reply[3] & 0xF
    return RCODE.get(rcode, str(rcode))


def _header_only(ident: int, opcode: int, rd: int, rcode: int) -> bytes:
    return DNSRecord(DNSHeader(id=ident, qr=1, opcode=opcode, rd=rd, rcode=rcode)).pack()


def _resolve(reply: DNSRecord, zones: Zones, addresses: tuple[str, ...], challenge_txt: Mapping[str, list[str]] = {}) -> None:
    """Fill `reply` (header, answer, authority, additional) for its one question."""
    question = reply.q
    qtype, owner, name = question.qtype, question.qname, _name(question.qname)
    zone = zones.zone_for(name)
    if zone is None or question.qclass != CLASS.IN or qtype in NO_TRANSFER:
        reply.header.rcode = RCODE.REFUSED
        return
    reply.header.aa = 1
    for _ in range(MAX_CNAME_CHAIN):
        node = _challenge_node(challenge_txt, name) or _node(zone, name, addresses)
        if node is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(_soa_rr(zone, NEGATIVE_TTL))
            return
        if QTYPE.CNAME in node and qtype != QTYPE.CNAME:
            reply.add_answer(RR(owner, QTYPE.CNAME, ttl=RECORD_TTL, rdata=node[QTYPE.CNAME][0]))
            if qtype not in ADDRESS_TYPES:
                return  # any other type: the CNAME alone tells the resolver where to look
            owner = node[QTYPE.CNAME][0].label
            name = _name(owner)
            zone = zones.zone_for(name)
            if zone is None:
                return
            continue
        if qtype == QTYPE.ANY and node:
            qtype = next(iter(node))  # RFC 8482: one RRset is enough
        if not node.get(qtype):
            reply.add_auth(_soa_rr(zone, NEGATIVE_TTL))
            return
        for rdata in node[qtype]:
            reply.add_answer(RR(owner, qtype, ttl=RECORD_TTL, rdata=rdata))
        if qtype == QTYPE.NS:
            ns1 = f"{NS_LABEL}.{zone.name}"
            for rtype, rdatas in _addresses(addresses).items():
                reply.add_ar(*(RR(ns1, rtype, ttl=RECORD_TTL, rdata=rdata) for rdata in rdatas))
        return


def _node(zone: Zone, name: str, addresses: tuple[str, ...]) -> Node | None:
    """The records at `name` in `zone`; None when the name does not exist."""
    if name == zone.name:
        apex = {QTYPE.SOA: [_soa(zone)], QTYPE.NS: [NS(f"{NS_LABEL}.{zone.name}")], **_addresses(addresses)}
        return apex | _txt(zone, name)
    if name == f"{NS_LABEL}.{zone.name}":  # the edge's own name server wins over any record
        return _addresses(addresses)
    if name == zone.tunnels_domain:
        return {} if zone.tunnel_ids else None
    if name.endswith("." + zone.tunnels_domain):
        return _addresses(addresses) if zone.tunnel_id_of_target(name) else None
    owner = zone.owner(name)
    if owner in zone.records:
        return {QTYPE.CNAME: [CNAME(zone.records[owner])]}
    if owner in zone.txt:
        return _txt(zone, owner)
    return {} if name in zone.empty_non_terminals else None


def _challenge_node(challenge_txt: Mapping[str, list[str]], name: str) -> Node | None:
    values = challenge_txt.get(name)
    return {QTYPE.TXT: [TXT(value.encode()) for value in values]} if values else None


def _addresses(addresses: tuple[str, ...]) -> Node:
    node: Node = {}
    for address in addresses:
        rtype, rdata = (QTYPE.AAAA, AAAA(address)) if ":" in address else (QTYPE.A, A(address))
        node.setdefault(rtype, []).append(rdata)
    return node


def _txt(zone: Zone, owner: str) -> Node:
    values = zone.txt.get(owner)
    return {QTYPE.TXT: [TXT([value.encode() for value in values])]} if values else {}


def _soa(zone: Zone) -> SOA:
    times = (zone.serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, NEGATIVE_TTL)
    return SOA(f"{NS_LABEL}.{zone.name}", f"{HOSTMASTER_LABEL}.{zone.name}", times)


def _soa_rr(zone: Zone, ttl: int) -> RR:
    return RR(zone.name, QTYPE.SOA, ttl=ttl, rdata=_soa(zone))


def _name(label: DNSLabel) -> str:
    """A query name as text to match records: lower case, any byte a record cannot hold escaped (`\\DDD`)."""
    return ".".join(_label_text(part.lower()) for part in label.label)


def _label_text(part: bytes) -> str:
    if not part.translate(None, LDH_STAR):
        return part.decode()
    return "".join(chr(c) if c in LDH_STAR else f"\\{c:03d}" for c in part)


# ---------------------------------------------------------------------------
# trio shell


class DnsServer:
    """UDP and TCP listeners on one port, answering from `zones()` read per query."""

    def __init__(
        self,
        zones: Callable[[], Zones],
        addresses: tuple[str, ...],
        on_reply: Callable[[str], None] | None = None,
        challenge_txt: Mapping[str, list[str]] = {},
    ) -> None:
        self._zones = zones
        self._challenge_txt = challenge_txt  # ACME DNS-01 answers, read per query
        self._addresses = tuple(addresses)
        self._tcp_slots = trio.CapacityLimiter(MAX_TCP_CONNECTIONS)
        self._on_reply = on_reply  # called with each reply's RCODE name (metrics)

    def _reply(self, query: bytes, *, tcp: bool) -> bytes | None:
        try:
            reply = answer(query, self._zones(), self._addresses, tcp=tcp, challenge_txt=self._challenge_txt)
        except Exception:  # a bug must not take the edge down with it; it is logged loudly
            log.exception("dns.internal_error size=%d", len(query))
            return None
        if reply is not None and self._on_reply is not None:
            self._on_reply(rcode_name(reply))
        return reply

    async def serve(self, listen: tuple[str, int], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `started()` reports the bound (host, port), the same for UDP and TCP."""
        udp, tcp = await _open_sockets(*listen)
        with udp, tcp:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_udp, udp)
                nursery.start_soon(trio.serve_listeners, self._handle_tcp, [trio.SocketListener(tcp)])
                host, port, *_ = udp.getsockname()
                log.info("dns.listening address=%s port=%d", host, port)
                task_status.started((host, port))

    async def _serve_udp(self, sock: trio.socket.SocketType) -> None:
        """Each reply leaves from the address its query was sent to (`pktinfo`)."""
        while True:
            query, received, _, peer = await sock.recvmsg(MAX_QUERY_SIZE + 1, pktinfo.ANCILLARY_SIZE)
            reply = self._reply(query, tcp=False) if len(query) <= MAX_QUERY_SIZE else None
            if reply is not None:
                try:
                    await sock.sendmsg([reply], pktinfo.reply_source(received), 0, peer)
                except OSError as exc:
                    log.debug("dns.udp_send_failed peer=%s error=%s", peer[0], exc)

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
                reply = self._reply(query, tcp=True) if query else None
                if reply:
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


async def _open_sockets(
    host: str, port: int, attempts: int = BIND_ATTEMPTS
) -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    """A UDP socket and a listening TCP socket on the same port; host "" is every address (dual stack)."""
    udp = await _bind(socket.SOCK_DGRAM, host, port)
    try:
        tcp = await _bind(socket.SOCK_STREAM, host, udp.getsockname()[1])
    except OSError as exc:
        udp.close()
        if port == 0 and exc.errno == errno.EADDRINUSE and attempts > 1:
            return await _open_sockets(host, port, attempts - 1)
        raise
    tcp.listen(TCP_BACKLOG)
    return udp, tcp


async def _bind(kind: int, host: str, port: int) -> trio.socket.SocketType:
    if host:
        family, *_, address = (await trio.socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE))[0]
    else:
        family, address = (socket.AF_INET6, ("::", port)) if socket.has_ipv6 else (socket.AF_INET, ("0.0.0.0", port))
    sock = trio.socket.socket(family, kind)
    try:
        if family == socket.AF_INET6 and not host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        else:
            sock.setsockopt(*pktinfo.receive_option(family), 1)
        await sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
