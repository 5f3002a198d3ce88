"""The edge's authoritative DNS answers: a pure `answer()` on dnslib records, one reply per message.

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
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from dnslib import AAAA, CLASS, CNAME, EDNS0, NS, OPCODE, QTYPE, RCODE, RR, SOA, TXT, A, DNSError, DNSHeader, DNSLabel, DNSRecord

from edge.dns.zone import NS_LABEL, QUICK_LABEL, Zone, Zones

RECORD_TTL = 300
QUICK_TTL = 10  # names under quick.<zone> (and their chain): resolvers forget an expired quick tunnel soon
NEGATIVE_TTL = 60  # SOA minimum and the SOA's TTL in negative answers (RFC 2308)
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 3600, 600, 1_209_600
HOSTMASTER_LABEL = "hostmaster"

HEADER_SIZE = 12
BADVERS = 16  # RFC 6891 extended RCODE (not in dnslib's table)
CLASSIC_UDP_SIZE = 512
MAX_UDP_SIZE = 1232  # DNS flag day 2020: the largest UDP answer we send, whatever the client says
MAX_TCP_SIZE = 65535
MAX_CNAME_CHAIN = 8

# What dnslib 0.9.26's parser raises on hostile input (found by fuzzing): its own
# DNSError, UnicodeDecodeError (CAA), RecursionError on long compression-pointer chains
# (which the section counts, checked before parsing, keep short).
PARSE_ERRORS = (DNSError, RecursionError, UnicodeDecodeError)
ADDRESS_TYPES = (QTYPE.A, QTYPE.AAAA)
NO_TRANSFER = (QTYPE.AXFR, QTYPE.IXFR)
LDH_STAR = b"abcdefghijklmnopqrstuvwxyz0123456789-_*"

RCODE_NAMES = tuple(RCODE.get(rcode, str(rcode)) for rcode in range(16))

Node = dict[int, list]  # qtype → rdata at one name; {} is a name with no data (empty non-terminal)



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
    return RCODE_NAMES[reply[3] & 0xF]


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
    ttl = QUICK_TTL if name.endswith(f".{QUICK_LABEL}.{zone.name}") else RECORD_TTL
    for _ in range(MAX_CNAME_CHAIN):
        node = _challenge_node(challenge_txt, name) or _node(zone, name, addresses)
        if node is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(_soa_rr(zone, NEGATIVE_TTL))
            return
        if QTYPE.CNAME in node and qtype != QTYPE.CNAME:
            reply.add_answer(RR(owner, QTYPE.CNAME, ttl=ttl, rdata=node[QTYPE.CNAME][0]))
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
            reply.add_answer(RR(owner, qtype, ttl=ttl, rdata=rdata))
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
