"""The answer cache: byte for byte what `answer()` returns, over many names, types, flags,
EDNS shapes and spellings, and never stale across snapshot changes."""

from __future__ import annotations

import struct

from dnslib import CLASS, EDNS0, QTYPE, RCODE, DNSHeader, DNSQuestion, DNSRecord, EDNSOption
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.dns import answer_cache
from edge.dns.answer import answer
from edge.dns.answer_cache import AnswerCache
from edge.dns.zone import Zone, Zones

ZONE = "example.test"
LIVE = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
OTHER = "8a1c3f60-2b1e-4c5d-9e7f-0a1b2c3d4e5f"
DEAD = "0b7e1f4c-0000-4000-8000-000000000000"
ADDRS = ("192.0.2.1", "2001:db8::1")


def target(tunnel_id: str, zone: str = ZONE) -> str:
    return f"{tunnel_id}.tunnels.{zone}"


def zones(records: dict[str, str], tunnel_ids: frozenset[str] = frozenset({LIVE, OTHER}), txt: dict | None = None) -> Zones:
    txt = {"_acme-challenge.example.test": ("token",), "big.example.test": ("x" * 255,) * 3, **(txt or {})}
    return Zones((Zone(ZONE, records, tunnel_ids, txt), Zone("sub.example.test", {"a.sub.example.test": target(LIVE, "sub.example.test")}, tunnel_ids)))


BASE = {
    "app.example.test": target(LIVE),
    "www.example.test": target(OTHER),
    "*.dev.example.test": target(LIVE),
    "gone.example.test": target(DEAD),
    "elsewhere.example.test": "app.example.test",  # not a tunnel: its answer follows another name
}
NAMES = [
    *BASE, "example.test", "ns1.example.test", target(LIVE), target(OTHER), target(DEAD), "tunnels.example.test",
    "a.dev.example.test", "a.b.dev.example.test", "dev.example.test", "nope.example.test", "a.nope.example.test",
    "_acme-challenge.example.test", "big.example.test", "sub.example.test", "a.sub.example.test", "example.org",
    "new.example.test", "x.new.example.test", ".",
]
QTYPES = [QTYPE.A, QTYPE.AAAA, QTYPE.CNAME, QTYPE.TXT, QTYPE.MX, QTYPE.HTTPS, QTYPE.ANY, QTYPE.SOA, QTYPE.NS, 99, QTYPE.AXFR]


@st.composite
def spelled(draw, name: str) -> str:
    """`name` with each letter in either case (0x20 resolvers), usually as it is."""
    if draw(st.booleans()):
        return name
    return "".join(c.upper() if c.isalpha() and draw(st.booleans()) else c for c in name)


@st.composite
def queries(draw, names=st.sampled_from(NAMES), qtypes=st.sampled_from(QTYPES)) -> bytes:
    name = draw(names.flatmap(spelled))
    record = DNSRecord(DNSHeader(id=0), q=DNSQuestion(name, draw(qtypes), draw(st.sampled_from([CLASS.IN] * 5 + [CLASS.CH]))))
    edns = draw(st.sampled_from([None, None, 512, 1232, 4096, 100, "version1", "cookie", "nsid"]))
    if edns == "version1":
        record.add_ar(EDNS0(udp_len=1232, version=1))
    elif edns == "cookie":
        record.add_ar(EDNS0(udp_len=1232, flags="do", opts=[EDNSOption(10, b"\x01" * 8)]))
    elif edns == "nsid":
        record.add_ar(EDNS0(udp_len=4096, opts=[EDNSOption(3, b"")]))
    elif edns is not None:
        record.add_ar(EDNS0(udp_len=edns))
    data = bytearray(record.pack())
    struct.pack_into("!H", data, 0, draw(st.integers(0, 0xFFFF)))
    data[2] = (data[2] & 0xFE) | draw(st.integers(0, 1))  # RD
    data[3] = draw(st.sampled_from([0, 0, 0x20, 0x10, 0xB0]))  # AD, CD, Z: ignored
    if draw(st.integers(0, 9)) == 0:
        data[2] |= draw(st.sampled_from([0x80, 0x08, 0x20]))  # a response, or another opcode
    if draw(st.integers(0, 9)) == 0:
        data += draw(st.binary(min_size=1, max_size=4))  # trailing bytes
    return bytes(data)


def check(cache: AnswerCache, query: bytes, snapshot: Zones, challenge_txt: dict | None = None) -> None:
    expected = answer(query, snapshot, ADDRS, challenge_txt=challenge_txt or {})
    assert cache.reply(query, snapshot, challenge_txt or {}) == expected
    assert cache.reply(query, snapshot, challenge_txt or {}) == expected  # the second time from the cache, if kept


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(queries(), min_size=1, max_size=30))
def test_same_bytes_as_answer(messages):
    snapshot, cache = zones(BASE), AnswerCache(ADDRS)
    for message in messages:
        check(cache, message, snapshot)


KEPT = ["app.example.test", "a.dev.example.test", "a.b.dev.example.test", "example.test", "ns1.example.test",
        target(LIVE), "_acme-challenge.example.test", "a.sub.example.test"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KEPT).flatmap(lambda name: st.sampled_from(QTYPES[:6]).flatmap(
    lambda qtype: st.lists(queries(st.just(name), st.just(qtype)), min_size=2, max_size=12))))
def test_a_kept_reply_serves_other_ids_flags_spellings_and_edns_sizes(messages):
    snapshot, cache = zones(BASE), AnswerCache(ADDRS)
    for message in messages:
        check(cache, message, snapshot)


MUTATIONS = [
    ("route", "new.example.test", LIVE), ("route", "app.example.test", OTHER), ("route", "*.new.example.test", OTHER),
    ("route", "*.dev.example.test", OTHER), ("unroute", "app.example.test", None), ("unroute", "*.dev.example.test", None),
    ("route", "a.dev.example.test", OTHER), ("txt", "a.nope.example.test", "hello"), ("txt", "example.test", "apex"),
    ("delete", None, LIVE), ("delete", None, OTHER), ("create", None, DEAD), ("same", None, None),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(queries(st.sampled_from(NAMES + KEPT * 2), st.sampled_from(QTYPES[:6] * 2 + QTYPES)),
                         st.sampled_from(MUTATIONS)), min_size=4, max_size=40))
def test_never_stale_across_snapshots(steps):
    """Every snapshot change the registry can make, between queries: each reply is the current
    one, including every question asked before the change (asked again after it)."""
    records, tunnel_ids, txt = dict(BASE), frozenset({LIVE, OTHER}), {}
    snapshot, cache = zones(dict(records), tunnel_ids, dict(txt)), AnswerCache(ADDRS)
    asked: list[bytes] = []
    for step in steps:
        if isinstance(step, bytes):
            check(cache, step, snapshot)
            asked.append(step)
            continue
        kind, name, value = step
        if kind == "route":
            records[name] = target(value)
        elif kind == "unroute":
            records.pop(name, None)
        elif kind == "txt":
            txt[name] = (value,)
        elif kind == "delete":
            tunnel_ids -= {value}
        elif kind == "create":
            tunnel_ids |= {value}
        snapshot = zones(dict(records), tunnel_ids, dict(txt))  # a fresh object, as the edge's refresher makes
        for message in asked:
            check(cache, message, snapshot)


def a_query(name: str, qtype: int = QTYPE.A, ident: int = 7) -> bytes:
    return bytes(DNSRecord(DNSHeader(id=ident), q=DNSQuestion(name, qtype)).pack())


def test_a_routed_name_is_answered_from_the_cache(monkeypatch):
    snapshot, cache = zones(BASE), AnswerCache(ADDRS)
    first = cache.reply(a_query("app.example.test", ident=1), snapshot)
    assert len(cache) == 1
    monkeypatch.setattr(answer_cache, "answer", None)  # a second call would fail
    again = cache.reply(a_query("app.example.test", ident=2), snapshot)
    assert again == answer(a_query("app.example.test", ident=2), snapshot, ADDRS) and again[2:] == first[2:]
    assert cache.reply(a_query("app.example.test", ident=3), zones(dict(BASE))) == again[:1] + b"\x03" + again[2:]


def test_nxdomain_and_unusual_questions_are_not_kept():
    snapshot, cache = zones(BASE), AnswerCache(ADDRS)
    for message in (a_query("nope.example.test"), a_query("app.example.test", 99), a_query("example.org"),
                    a_query("gone.example.test"), a_query("elsewhere.example.test"), a_query("dev.example.test")):
        check(cache, message, snapshot)
    assert len(cache) == 0


def test_a_route_change_is_answered_at_once():
    cache = AnswerCache(ADDRS)
    check(cache, a_query("app.example.test"), zones(BASE))
    moved = zones({**BASE, "app.example.test": target(OTHER)})
    assert OTHER in str(DNSRecord.parse(cache.reply(a_query("app.example.test"), moved)).rr[0].rdata)


def test_a_deleted_tunnel_drops_the_replies_through_it():
    cache = AnswerCache(ADDRS)
    for name in ("app.example.test", "www.example.test", target(OTHER), "a.dev.example.test"):
        check(cache, a_query(name), zones(BASE))
    gone = zones(BASE, frozenset({LIVE}))  # the same records: only the tunnel is gone
    for name in ("www.example.test", target(OTHER)):
        assert DNSRecord.parse(cache.reply(a_query(name), gone)).header.rcode == RCODE.NXDOMAIN
    assert len(cache) == 2  # the replies through the other tunnel are kept
    check(cache, a_query("app.example.test"), zones(BASE, frozenset()))  # a wildcard through it: all are dropped
    assert len(cache) == 0


def test_an_equal_snapshot_keeps_the_cache_and_a_change_drops_only_its_names():
    cache = AnswerCache(ADDRS)
    for name in ("app.example.test", "www.example.test", "a.dev.example.test", "example.test"):
        cache.reply(a_query(name), zones(BASE))
    cache.reply(a_query("app.example.test"), zones(dict(BASE)))
    assert len(cache) == 4
    cache.reply(a_query("www.example.test"), zones({**BASE, "app.example.test": target(OTHER)}))
    assert len(cache) == 2  # the changed name and the apex (its SOA serial) are gone
    cache.reply(a_query("www.example.test"), zones({**BASE, "*.x.example.test": target(OTHER)}))
    assert len(cache) == 1  # a wildcard changed: everything went, then www came back


def test_a_pending_challenge_bypasses_the_cache():
    snapshot, cache = zones(BASE), AnswerCache(ADDRS)
    pending = {"app.example.test": ["challenge"]}
    check(cache, a_query("app.example.test", QTYPE.TXT), snapshot, pending)
    assert len(cache) == 0
    check(cache, a_query("app.example.test", QTYPE.TXT), snapshot)
    check(cache, a_query("app.example.test", QTYPE.TXT), snapshot, pending)


def test_the_cache_is_bounded():
    records = {f"host-{i}.example.test": target(LIVE) for i in range(50)}
    snapshot, cache = zones(records), AnswerCache(ADDRS, max_entries=10)
    for name in records:
        check(cache, a_query(name), snapshot)
        check(cache, a_query(name.upper()), snapshot)
    assert len(cache) == 10
