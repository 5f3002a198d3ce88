"""The edge's authoritative DNS: `answer()` rule by rule, then the trio shell on loopback sockets."""

from __future__ import annotations

import logging
import random
import socket
import struct

import pytest
import trio
from dnslib import CLASS, EDNS0, OPCODE, QTYPE, RCODE, DNSLabel, DNSQuestion, DNSRecord

from edge.dns import answer as dns
from edge.dns import server as shell
from edge.dns.answer import answer
from edge.dns.server import DnsServer
from edge.dns.zone import Zone, Zones

TID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
DEAD = "0b7e1f4c-0000-4000-8000-000000000000"
TARGET = f"{TID}.tunnels.example.test."
ADDRS = ("192.0.2.1", "2001:db8::1")
BIG_TXT = tuple("x" * 255 for _ in range(16))  # ~4 KiB: more than any UDP answer may carry
MID_TXT = tuple("m" * 255 for _ in range(3))  # ~800 B: fits EDNS0 1232, not classic 512
ZONES = Zones(
    (
        Zone(
            "example.test",
            {
                "app.example.test": TARGET[:-1],
                "*.dev.example.test": TARGET[:-1],
                "gone.example.test": f"{DEAD}.tunnels.example.test",
            },
            frozenset({TID}),
            {"_acme-challenge.example.test": ("token",), "big.example.test": BIG_TXT, "mid.example.test": MID_TXT},
        ),
        Zone("sub.example.test", {}, frozenset({TID})),
    )
)
SOA_AUTH = ["example.test. SOA"]


def query(name: str | DNSLabel, qtype: str = "A", *, qclass: int = CLASS.IN, edns: int | None = None) -> bytes:
    request = DNSRecord(q=DNSQuestion(name, getattr(QTYPE, qtype), qclass))
    if edns is not None:
        request.add_ar(EDNS0(udp_len=edns))
    return request.pack()


def ask(data: bytes, *, tcp: bool = False) -> DNSRecord:
    reply = answer(data, ZONES, ADDRS, tcp=tcp)
    assert reply is not None
    return DNSRecord.parse(reply)


def rendered(rrs) -> list[str]:
    """`name TYPE rdata`; an SOA only as `name SOA` (its serial is a digest)."""
    return [
        f"{rr.rname} SOA" if rr.rtype == QTYPE.SOA else f"{rr.rname} {QTYPE[rr.rtype]} {rr.rdata}" for rr in rrs
    ]


# (id, name, qtype, rcode, answer, authority); every in-zone reply is authoritative.
CASES = [
    ("apex-soa", "example.test", "SOA", "NOERROR", ["example.test. SOA"], []),
    ("apex-ns", "example.test", "NS", "NOERROR", ["example.test. NS ns1.example.test."], []),
    ("apex-a", "example.test", "A", "NOERROR", ["example.test. A 192.0.2.1"], []),
    ("apex-aaaa", "example.test", "AAAA", "NOERROR", ["example.test. AAAA 2001:db8::1"], []),
    ("apex-mx-nodata", "example.test", "MX", "NOERROR", [], SOA_AUTH),
    ("ns1-a", "ns1.example.test", "A", "NOERROR", ["ns1.example.test. A 192.0.2.1"], []),
    ("ns1-aaaa", "ns1.example.test", "AAAA", "NOERROR", ["ns1.example.test. AAAA 2001:db8::1"], []),
    ("routed-a", "app.example.test", "A", "NOERROR", [f"app.example.test. CNAME {TARGET}", f"{TARGET} A 192.0.2.1"], []),
    (
        "routed-aaaa", "app.example.test", "AAAA", "NOERROR",
        [f"app.example.test. CNAME {TARGET}", f"{TARGET} AAAA 2001:db8::1"], [],
    ),
    ("routed-cname", "app.example.test", "CNAME", "NOERROR", [f"app.example.test. CNAME {TARGET}"], []),
    ("routed-txt-cname-only", "app.example.test", "TXT", "NOERROR", [f"app.example.test. CNAME {TARGET}"], []),
    ("routed-mx-cname-only", "app.example.test", "MX", "NOERROR", [f"app.example.test. CNAME {TARGET}"], []),
    ("case-kept", "App.EXAMPLE.test", "A", "NOERROR", [f"App.EXAMPLE.test. CNAME {TARGET}", f"{TARGET} A 192.0.2.1"], []),
    ("wildcard", "a.dev.example.test", "A", "NOERROR", [f"a.dev.example.test. CNAME {TARGET}", f"{TARGET} A 192.0.2.1"], []),
    (
        "wildcard-deep", "a.b.dev.example.test", "AAAA", "NOERROR",
        [f"a.b.dev.example.test. CNAME {TARGET}", f"{TARGET} AAAA 2001:db8::1"], [],
    ),
    ("wildcard-parent-nodata", "dev.example.test", "A", "NOERROR", [], SOA_AUTH),
    ("tunnel-target-a", TARGET, "A", "NOERROR", [f"{TARGET} A 192.0.2.1"], []),
    ("tunnel-target-aaaa", TARGET, "AAAA", "NOERROR", [f"{TARGET} AAAA 2001:db8::1"], []),
    ("tunnel-target-txt-nodata", TARGET, "TXT", "NOERROR", [], SOA_AUTH),
    ("deleted-tunnel-nxdomain", f"{DEAD}.tunnels.example.test", "A", "NXDOMAIN", [], SOA_AUTH),
    (
        "cname-to-deleted-tunnel", "gone.example.test", "A", "NXDOMAIN",
        [f"gone.example.test. CNAME {DEAD}.tunnels.example.test."], SOA_AUTH,
    ),
    ("tunnels-domain-nodata", "tunnels.example.test", "A", "NOERROR", [], SOA_AUTH),
    ("txt", "_acme-challenge.example.test", "TXT", "NOERROR", ['_acme-challenge.example.test. TXT "token"'], []),
    ("txt-name-a-nodata", "_acme-challenge.example.test", "A", "NOERROR", [], SOA_AUTH),
    ("any-apex-one-rrset", "example.test", "ANY", "NOERROR", ["example.test. SOA"], []),
    ("any-routed-cname", "app.example.test", "ANY", "NOERROR", [f"app.example.test. CNAME {TARGET}"], []),
    ("any-ns1", "ns1.example.test", "ANY", "NOERROR", ["ns1.example.test. A 192.0.2.1"], []),
    ("any-empty-nodata", "dev.example.test", "ANY", "NOERROR", [], SOA_AUTH),
    ("unknown-nxdomain", "nope.example.test", "A", "NXDOMAIN", [], SOA_AUTH),
    ("unknown-deep-nxdomain", "a.nope.example.test", "TXT", "NXDOMAIN", [], SOA_AUTH),
    ("odd-bytes-nxdomain", DNSLabel([b"x.app", b"example", b"test"]), "A", "NXDOMAIN", [], SOA_AUTH),
    ("longest-zone", "sub.example.test", "SOA", "NOERROR", ["sub.example.test. SOA"], []),
    ("outside-refused", "example.org", "A", "REFUSED", [], []),
    ("suffix-not-zone-refused", "badexample.test", "A", "REFUSED", [], []),
    ("root-refused", ".", "NS", "REFUSED", [], []),
    ("axfr-refused", "example.test", "AXFR", "REFUSED", [], []),
]


def test_cases_are_not_empty():
    assert len(CASES) > 30


@pytest.mark.parametrize("name, qtype, rcode, answers, authority", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_answer(name, qtype, rcode, answers, authority):
    request = DNSRecord.parse(query(name, qtype))
    reply = ask(request.pack())
    assert RCODE[reply.header.rcode] == rcode
    assert rendered(reply.rr) == answers
    assert rendered(reply.auth) == authority
    assert reply.header.id == request.header.id and reply.header.qr == 1
    assert reply.header.aa == (rcode != "REFUSED")
    assert reply.header.ra == 0 and reply.header.tc == 0
    assert reply.q == request.q


def test_ns_answer_carries_glue():
    reply = ask(query("example.test", "NS"))
    assert rendered(reply.ar) == ["ns1.example.test. A 192.0.2.1", "ns1.example.test. AAAA 2001:db8::1"]


def test_soa_fields_and_negative_ttl():
    (soa,) = ask(query("example.test", "SOA")).rr
    assert (str(soa.rdata.mname), str(soa.rdata.rname)) == ("ns1.example.test.", "hostmaster.example.test.")
    assert soa.rdata.times[1:] == (dns.SOA_REFRESH, dns.SOA_RETRY, dns.SOA_EXPIRE, dns.NEGATIVE_TTL)
    (negative,) = ask(query("nope.example.test")).auth
    assert negative.ttl == dns.NEGATIVE_TTL


def serial(zone: Zone) -> int:
    (soa,) = DNSRecord.parse(answer(query(zone.name, "SOA"), Zones((zone,)), ADDRS)).rr
    return soa.rdata.times[0]


def test_serial_follows_the_snapshot():
    base = Zone("example.test", {"a.example.test": TARGET[:-1]}, frozenset({TID}))
    same = Zone("example.test", {"a.example.test": TARGET[:-1]}, frozenset({TID}))
    routed = Zone("example.test", {"a.example.test": TARGET[:-1], "b.example.test": TARGET[:-1]}, frozenset({TID}))
    with_txt = Zone("example.test", {"a.example.test": TARGET[:-1]}, frozenset({TID}), {"t.example.test": ("v",)})
    assert serial(base) == serial(same)
    assert len({serial(base), serial(routed), serial(with_txt)}) == 3


def header(ident: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", ident, flags, qd, an, ns, ar)


def pointer_chain(length: int) -> bytes:
    """`length` questions, each name a pointer to the one before: dnslib recurses once per hop
    (RecursionError past ~1000) and its work grows with the square of `length`."""
    body, offsets = b"\x00\x00\x01\x00\x01", [12]
    for _ in range(length - 1):
        offsets.append(12 + len(body))
        body += struct.pack("!H", 0xC000 | offsets[-2]) + b"\x00\x01\x00\x01"
    return header(qd=length) + body


def two_opts() -> bytes:
    request = DNSRecord.question("app.example.test")
    request.add_ar(EDNS0())
    request.add_ar(EDNS0())
    return request.pack()


def edns_version(version: int) -> bytes:
    request = DNSRecord.question("app.example.test")
    request.add_ar(EDNS0(version=version))
    return request.pack()


# (id, message, rcode or None for no reply at all)
HEADER_CASES = [
    ("empty-dropped", b"", None),
    ("short-dropped", b"\x12\x34\x01", None),
    ("response-dropped", header(flags=0x8180) + query("app.example.test")[12:], None),
    ("notify-notimp", header(flags=OPCODE.NOTIFY << 11) + query("example.test", "SOA")[12:], RCODE.NOTIMP),
    ("status-notimp", header(flags=OPCODE.STATUS << 11, qd=0), RCODE.NOTIMP),
    ("no-question-formerr", header(qd=0), RCODE.FORMERR),
    ("two-questions-formerr", header(qd=2) + query("a.example.test")[12:] + query("b.example.test")[12:], RCODE.FORMERR),
    ("cut-question-formerr", query("app.example.test")[:20], RCODE.FORMERR),
    ("pointer-loop-formerr", header() + b"\xc0\x0c\x00\x01\x00\x01", RCODE.FORMERR),
    ("pointer-chain-formerr", pointer_chain(600), RCODE.FORMERR),
    ("bad-label-formerr", header() + b"\x3fabc\x00\x00\x01\x00\x01", RCODE.FORMERR),
    ("two-additional-formerr", two_opts(), RCODE.FORMERR),
    ("answer-in-query-formerr", header(an=1) + query("app.example.test")[12:], RCODE.FORMERR),
    ("edns-version-1-badvers", edns_version(1), 0),
]


@pytest.mark.parametrize("message, rcode", [c[1:] for c in HEADER_CASES], ids=[c[0] for c in HEADER_CASES])
def test_header_level_errors(message, rcode):
    reply = answer(message, ZONES, ADDRS)
    if rcode is None:
        assert reply is None
        return
    parsed = DNSRecord.parse(reply)
    assert parsed.header.id == 0x1234 or message[:2] != b"\x12\x34"
    assert (parsed.header.qr, parsed.header.aa, parsed.header.ra, parsed.header.rcode) == (1, 0, 0, rcode)
    assert parsed.header.rd == message[2] & 1  # RD is copied


def test_badvers_sets_the_extended_rcode():
    (opt,) = DNSRecord.parse(answer(edns_version(1), ZONES, ADDRS)).ar
    assert opt.rtype == QTYPE.OPT and opt.ttl >> 24 == dns.BADVERS >> 4


# (id, name, EDNS0 size or None, tcp, truncated)
SIZE_CASES = [
    ("mid-classic-udp-truncated", "mid.example.test", None, False, True),
    ("mid-edns-1232-whole", "mid.example.test", 1232, False, False),
    ("mid-edns-600-truncated", "mid.example.test", 600, False, True),
    ("mid-edns-below-512-means-512", "mid.example.test", 100, False, True),
    ("big-edns-4096-capped-at-1232", "big.example.test", 4096, False, True),
    ("big-tcp-whole", "big.example.test", None, True, False),
    ("big-tcp-edns-whole", "big.example.test", 1232, True, False),
]


@pytest.mark.parametrize("name, edns, tcp, truncated", [c[1:] for c in SIZE_CASES], ids=[c[0] for c in SIZE_CASES])
def test_udp_size_limits(name, edns, tcp, truncated):
    raw = answer(query(name, "TXT", edns=edns), ZONES, ADDRS, tcp=tcp)
    reply = DNSRecord.parse(raw)
    limit = 65535 if tcp else min(max(edns or 512, 512), 1232)
    assert len(raw) <= limit
    assert reply.header.tc == truncated
    if truncated:
        assert reply.rr == [] and reply.auth == []
    else:
        values = BIG_TXT if name.startswith("big") else MID_TXT
        assert [value.decode() for value in reply.rr[0].rdata.data] == list(values)
    assert [rr.rtype for rr in reply.ar] == ([QTYPE.OPT] if edns else [])  # EDNS0 answered with EDNS0
    assert reply.q.qname == name


def test_mutated_messages_never_raise():
    """Thousands of random and bit-flipped messages: a reply that parses with the same id, or none."""
    rng = random.Random(4592)
    seeds = [query("app.example.test"), query("big.example.test", "TXT", edns=1232), query("example.test", "NS")]
    for _ in range(5000):
        message = mutate(rng, rng.choice(seeds))
        reply = answer(message, ZONES, ADDRS, tcp=rng.random() < 0.5)
        if reply is not None:
            assert DNSRecord.parse(reply).header.id == int.from_bytes(message[:2], "big")


def mutate(rng: random.Random, seed: bytes) -> bytes:
    if rng.random() < 0.2:
        return rng.randbytes(rng.randrange(0, 600))
    data = bytearray(seed)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(4)
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1:
            del data[rng.randrange(len(data) + 1) :]
        elif op == 2:
            data[rng.randrange(len(data) + 1) : 0] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3 and len(data) > 14:
            at = rng.randrange(12, len(data) - 1)
            data[at : at + 2] = struct.pack("!H", 0xC000 | rng.randrange(0, len(data)))
    return bytes(data)


# ---------------------------------------------------------------------------
# The trio shell on real loopback sockets


class Snapshot:
    """Stands in for the router: the server reads `.zones` on every query."""

    def __init__(self, zones: Zones) -> None:
        self.zones = zones


@pytest.fixture
def snapshot():
    return Snapshot(ZONES)


@pytest.fixture
async def port(nursery, snapshot):
    server = DnsServer(lambda: snapshot.zones, ADDRS)
    host, bound = await nursery.start(server.serve, ("127.0.0.1", 0))
    assert host == "127.0.0.1" and bound > 0
    return bound


async def udp_exchange(port: int, message: bytes) -> DNSRecord:
    """Send until the reply with our id comes (UDP may drop; resolvers retry too)."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.connect(("127.0.0.1", port))
        for _ in range(5):
            await sock.send(message)
            with trio.move_on_after(1):
                while True:
                    reply = DNSRecord.parse(await sock.recv(65535))
                    if reply.header.id == int.from_bytes(message[:2], "big"):
                        return reply
    raise AssertionError("no reply over UDP")


async def tcp_send(stream: trio.abc.Stream, message: bytes) -> None:
    await stream.send_all(len(message).to_bytes(2, "big") + message)


async def receive_exactly(stream: trio.abc.Stream, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))  # never past this message
        if not chunk:
            return None
        data += chunk
    return data


async def tcp_receive(stream: trio.abc.Stream) -> DNSRecord | None:
    """One length-prefixed reply, or None if the server closed the connection."""
    with trio.fail_after(5):
        prefix = await receive_exactly(stream, 2)
        message = prefix and await receive_exactly(stream, int.from_bytes(prefix, "big"))
    return DNSRecord.parse(message) if message else None


async def tcp_exchange(port: int, message: bytes) -> DNSRecord:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await tcp_send(stream, message)
        return await tcp_receive(stream)


async def test_udp_and_tcp_answer_on_the_same_port(port):
    for exchange in (udp_exchange, tcp_exchange):
        reply = await exchange(port, query("app.example.test"))
        assert rendered(reply.rr) == [f"app.example.test. CNAME {TARGET}", f"{TARGET} A 192.0.2.1"]


async def test_truncated_over_udp_whole_over_tcp(port):
    message = query("big.example.test", "TXT", edns=4096)
    over_udp = await udp_exchange(port, message)
    assert over_udp.header.tc == 1 and over_udp.rr == []
    over_tcp = await tcp_exchange(port, message)
    assert over_tcp.header.tc == 0 and len(over_tcp.rr[0].rdata.data) == len(BIG_TXT)


async def test_tcp_carries_several_queries_per_connection(port):
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        first, second = query("app.example.test"), query("nope.example.test")
        await stream.send_all(b"".join(len(m).to_bytes(2, "big") + m for m in (first, second)))
        assert (await tcp_receive(stream)).header.rcode == RCODE.NOERROR
        assert (await tcp_receive(stream)).header.rcode == RCODE.NXDOMAIN


async def test_each_query_reads_the_current_snapshot(port, snapshot):
    assert (await udp_exchange(port, query("new.example.test"))).header.rcode == RCODE.NXDOMAIN
    (zone, sub) = ZONES.zones
    snapshot.zones = Zones((Zone(zone.name, {**zone.records, "new.example.test": TARGET[:-1]}, zone.tunnel_ids), sub))
    assert rendered((await udp_exchange(port, query("new.example.test"))).rr)[0] == f"new.example.test. CNAME {TARGET}"


async def test_a_burst_over_udp_is_answered_and_counted_by_rcode(nursery, snapshot):
    """More datagrams than one batch, sent before the server runs: each answered once, each counted once."""
    counted: dict[str, int] = {}
    server = DnsServer(lambda: snapshot.zones, ADDRS, lambda rcode, count: counted.update({rcode: counted.get(rcode, 0) + count}))
    _, port = await nursery.start(server.serve, ("127.0.0.1", 0))
    names = ["app.example.test", "nope.example.test", "example.org"] * (shell.UDP_BATCH // 2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        for ident, name in enumerate(names):  # no checkpoint: all queued before the server reads
            sock.send(struct.pack("!H", ident) + query(name)[2:])
        replies = await trio.to_thread.run_sync(lambda: [sock.recv(512) for _ in names])
    assert sorted(int.from_bytes(reply[:2], "big") for reply in replies) == list(range(len(names)))
    assert counted == {"NOERROR": len(names) // 3, "NXDOMAIN": len(names) // 3, "REFUSED": len(names) // 3}


async def test_idle_tcp_connection_is_closed(monkeypatch, port):
    monkeypatch.setattr(shell, "TCP_IDLE_TIMEOUT", 0.2)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"\x00")  # half a length prefix, then nothing
        with trio.fail_after(5):
            assert await stream.receive_some(10) == b""


@pytest.mark.parametrize("prefix", [b"\x00\x00", struct.pack("!H", shell.MAX_QUERY_SIZE + 1)], ids=["zero", "too-big"])
async def test_bad_tcp_length_closes_the_connection(port, prefix):
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(prefix)
        assert await tcp_receive(stream) is None


async def test_tcp_connections_are_bounded(monkeypatch, nursery, snapshot):
    monkeypatch.setattr(shell, "MAX_TCP_CONNECTIONS", 2)
    server = DnsServer(lambda: snapshot.zones, ADDRS)
    _, port = await nursery.start(server.serve, ("127.0.0.1", 0))
    held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    for stream in held:  # an answer proves each holds a slot
        await tcp_send(stream, query("app.example.test"))
        assert await tcp_receive(stream) is not None
    async with await trio.open_tcp_stream("127.0.0.1", port) as refused:
        await tcp_send(refused, query("app.example.test"))
        assert await tcp_receive(refused) is None
    await held.pop().aclose()
    with trio.fail_after(5):  # the freed slot is reused once the server has seen the close
        while await tcp_exchange(port, query("app.example.test")) is None:
            await trio.sleep(0.01)
    await held.pop().aclose()


async def test_survives_a_flood_of_garbage(port, caplog):
    """A few thousand random and mutated messages over UDP and TCP, then a valid query still works."""
    rng = random.Random(1035)
    seeds = [query("app.example.test"), query("big.example.test", "TXT"), pointer_chain(600), two_opts()]
    with trio.fail_after(60), caplog.at_level(logging.ERROR, logger="edge.dns.server"):
        with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
            await sock.connect(("127.0.0.1", port))
            for _ in range(3000):
                await sock.send(mutate(rng, rng.choice(seeds)))
        for _ in range(20):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                try:
                    for _ in range(50):
                        message = mutate(rng, rng.choice(seeds))
                        if rng.random() < 0.9:
                            await tcp_send(stream, message)
                        else:  # a lying length prefix: the server waits, or hangs up
                            await stream.send_all(struct.pack("!H", rng.randrange(65536)) + message)
                            break
                except trio.BrokenResourceError:
                    pass  # the server hung up on a bad length
        assert (await udp_exchange(port, query("app.example.test"))).header.rcode == RCODE.NOERROR
        assert (await tcp_exchange(port, query("app.example.test"))).header.rcode == RCODE.NOERROR
    assert not [r for r in caplog.records if r.name == "edge.dns.server"]
