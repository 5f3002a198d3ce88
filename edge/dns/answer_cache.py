"""UDP replies kept per registry snapshot, so a question asked before costs a dict lookup. Pure.

`AnswerCache.reply()` returns the bytes `answer()` returns for the same UDP query: the first
time a question is asked its reply comes from `answer()` and, if it may be kept, is stored;
later it is served with the query's ID, RD flag and spelling of the name put in.

* Kept: NOERROR replies with at least one answer record and at most 512 bytes (so they
  fit every UDP limit), to one question of class IN and type A, AAAA, CNAME, TXT, MX or
  HTTPS, with no additional record or one EDNS0 version 0 OPT record, at the apex,
  `ns1`, a tunnel's name, a name with TXT, or a name routed (exactly or through a
  wildcard) to a tunnel's name. Everything else goes to `answer()` every time: NXDOMAIN,
  NODATA, other types, malformed or unusual messages, and every query while an ACME
  DNS-01 challenge is pending.
* Key: the question with the name lower-cased, per EDNS or not. The bytes after the
  question depend on the name's case only through name compression, which matches the
  zone's lower-case names against the query name's suffixes: a name in mixed case (0x20
  resolvers) is keyed with how many of its last labels are lower-case.
* Bound: MAX_ENTRIES replies (the newest one makes room), ≈ 115 bytes each when
  replies of the same shape share their bytes, as a zone's routed names do: ≈ 60 MiB full.
* Invalidation: a snapshot equal to the last (the edge re-reads the registry every few
  seconds) keeps every reply; otherwise the replies at each apex (the SOA serial), at
  every name whose records changed, at a deleted tunnel's name and at the names routed
  to it are dropped, and all of them when a wildcard changed (a wildcard routed to a
  deleted tunnel included), the zones differ or more than MAX_EVICTIONS names changed.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from dnslib import CLASS, QTYPE

from edge.dns.answer import CLASSIC_UDP_SIZE, HEADER_SIZE, LDH_STAR, answer
from edge.dns.zone import NS_LABEL, Zones

MAX_ENTRIES = 1 << 19
MAX_EVICTIONS = 10_000
TYPES = (QTYPE.A, QTYPE.AAAA, QTYPE.CNAME, QTYPE.TXT, QTYPE.MX, QTYPE.HTTPS)
TAILS = frozenset(struct.pack("!HH", qtype, CLASS.IN) for qtype in TYPES)  # QTYPE and QCLASS as sent
ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # QD 1, AN 0, NS 0, AR 0
WITH_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # ... AR 1
OPT_START = b"\x00\x00\x29"  # the root name, TYPE 41
OPT_FIXED = 11  # name, type, class, TTL, RDLENGTH
MAX_LABEL = 63

Entry = tuple[tuple[bytes, bytes], bytes]  # (flags and counts without RD, with RD), the bytes after the question


class AnswerCache:
    """`answer()` for UDP queries, with its replies kept per snapshot (see the module docstring)."""

    def __init__(self, addresses: tuple[str, ...], max_entries: int = MAX_ENTRIES) -> None:
        self._addresses = addresses
        self._max_entries = max_entries
        self._zones: Zones | None = None
        self._lower: tuple[dict[bytes, Entry], dict[bytes, Entry]] = ({}, {})  # without, with EDNS
        self._mixed: dict[tuple[int, bytes, int], Entry] = {}  # (EDNS, key, lower-case last labels)
        self._shared: dict[Entry, Entry] = {}  # one copy of each distinct entry

    def __len__(self) -> int:
        return len(self._lower[0]) + len(self._lower[1]) + len(self._mixed)

    def reply(self, query: bytes, zones: Zones, challenge_txt: Mapping[str, list[str]] = {}) -> bytes | None:
        """`answer(query, zones, addresses, challenge_txt=challenge_txt)` over UDP."""
        if zones is not self._zones:
            self._adopt(zones)
        question = _question(query)
        if question is None or challenge_txt:
            return answer(query, zones, self._addresses, challenge_txt=challenge_txt)
        end, edns = question
        name = query[HEADER_SIZE:end - 4]
        lower = name.lower()
        key = lower + query[end - 4:end]
        table: dict = self._lower[edns]
        if lower != name:
            key, table = (edns, key, _lower_labels(name)), self._mixed
        entry = table.get(key)
        if entry is not None:
            heads, rest = entry
            return b"".join((query[:2], heads[query[2] & 1], query[HEADER_SIZE:end], rest))
        data = answer(query, zones, self._addresses)
        if data is not None and _keeps(data, lower, zones):
            self._store(table, key, data, end)
        return data

    def clear(self) -> None:
        for table in (*self._lower, self._mixed, self._shared):
            table.clear()

    def _store(self, table: dict, key: bytes | tuple, data: bytes, end: int) -> None:
        if len(self) >= self._max_entries:
            max((*self._lower, self._mixed), key=len).popitem()
        if len(self._shared) >= self._max_entries:
            self._shared.clear()
        flags = data[2] & 0xFE
        entry = ((bytes((flags,)) + data[3:HEADER_SIZE], bytes((flags | 1,)) + data[3:HEADER_SIZE]), bytes(data[end:]))
        table[key] = self._shared.setdefault(entry, entry)

    def _adopt(self, zones: Zones) -> None:
        """Keep what the new snapshot still answers the same way."""
        old, self._zones = self._zones, zones
        if old is None or old == zones:
            return
        changed = _changed_names(old, zones)
        if changed is None:
            self.clear()
            return
        self._mixed.clear()
        for name in changed:
            wire = _wire(name)
            for table in self._lower:
                for tail in TAILS:
                    table.pop(wire + tail, None)


def _question(query: bytes) -> tuple[int, int] | None:
    """(end of the question, 1 if EDNS0 else 0) for a query the cache may answer, else None."""
    if len(query) < HEADER_SIZE or query[2] & 0xF8:  # a response, or an opcode other than QUERY
        return None
    end = _name_end(query, HEADER_SIZE) + 4
    if end < HEADER_SIZE + 5 or end > len(query) or query[end - 4:end] not in TAILS:
        return None
    counts = query[4:HEADER_SIZE]
    if counts == ONE_QUESTION and len(query) == end:
        return end, 0
    if counts == WITH_OPT and _is_opt(query, end):
        return end, 1
    return None


def _name_end(query: bytes, offset: int) -> int:
    """Where the uncompressed name at `offset` ends; -1 if it is not one."""
    while offset < len(query):
        size = query[offset]
        if size == 0:
            return offset + 1
        if size > MAX_LABEL:
            return -1
        offset += size + 1
    return -1


def _is_opt(query: bytes, start: int) -> bool:
    """An OPT record at `start` that ends the message: root name, EDNS version 0, well-formed options."""
    if query[start:start + 3] != OPT_START or len(query) < start + OPT_FIXED or query[start + 6] != 0:
        return False
    offset = start + OPT_FIXED
    if offset + int.from_bytes(query[start + 9:offset]) != len(query):
        return False
    while offset + 4 <= len(query):
        offset += 4 + int.from_bytes(query[offset + 2:offset + 4])
    return offset == len(query)


def _labels(name: bytes) -> list[bytes]:
    labels, offset = [], 0
    while name[offset]:
        labels.append(name[offset + 1:offset + 1 + name[offset]])
        offset += name[offset] + 1
    return labels


def _lower_labels(name: bytes) -> int:
    """How many of the name's last labels are in lower case."""
    count = 0
    for label in reversed(_labels(name)):
        if label != label.lower():
            break
        count += 1
    return count


def _wire(name: str) -> bytes:
    return b"".join(bytes((len(label),)) + label.encode() for label in name.split(".")) + b"\x00"


def _keeps(data: bytes, wire: bytes, zones: Zones) -> bool:
    """A reply worth keeping, at a name whose answer changes only with its own records (or a tunnel's removal)."""
    if len(data) > CLASSIC_UDP_SIZE or data[3] & 0x0F or data[2] & 0x02 or data[6:8] == b"\x00\x00":
        return False
    labels = _labels(wire)
    if not labels or any(label.translate(None, LDH_STAR) for label in labels):
        return False
    name = b".".join(labels).decode()
    zone = zones.zone_for(name)
    if zone is None:
        return False
    if name in (zone.name, f"{NS_LABEL}.{zone.name}") or name.endswith("." + zone.tunnels_domain):
        return True
    owner = zone.owner(name)
    target = zone.records.get(owner) if owner else None
    if target is None:
        return owner in zone.txt
    target_zone = zones.zone_for(target)
    return target_zone is not None and target.endswith("." + target_zone.tunnels_domain)


def _changed_names(old: Zones, new: Zones) -> set[str] | None:
    """The names whose replies may differ between two snapshots; None when any reply may."""
    if [zone.name for zone in old.zones] != [zone.name for zone in new.zones]:
        return None
    pairs = list(zip(old.zones, new.zones))
    gone = {after.tunnel_target(tunnel_id) for before, after in pairs for tunnel_id in before.tunnel_ids - after.tunnel_ids}
    names = set(gone)  # a deleted tunnel's name, and below: the names still routed to it
    for before, after in pairs:
        names.add(after.name)  # the SOA serial follows every change
        for mine, theirs in ((before.records, after.records), (before.txt, after.txt)):
            if mine != theirs:
                names.update(host for host, _ in mine.items() ^ theirs.items())
        if gone:
            names.update(host for host, target in after.records.items() if target in gone)
    if len(names) > MAX_EVICTIONS or any(name.startswith("*.") for name in names):
        return None
    return names
