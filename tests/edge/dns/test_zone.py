"""The one hostname → tunnel lookup that DNS and the router share."""

import pytest

from edge.dns.zone import Zone, Zones, normalize_host

TID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
ZONE = Zone(
    "example.test",
    {"app.example.test": f"{TID}.tunnels.example.test", "gone.example.test": "dead.tunnels.example.test"},
    frozenset({TID}),
)

CASES = [
    ("app.example.test", TID),
    ("APP.Example.Test.", TID),
    ("app.example.test:8443", TID),
    (f"{TID}.tunnels.example.test", TID),
    ("gone.example.test", None),
    ("other.example.test", None),
    ("app.example.org", None),
]


@pytest.mark.parametrize("host, expected", CASES, ids=[c[0] for c in CASES])
def test_tunnel_for(host, expected):
    assert ZONE.tunnel_for(host) == expected


@pytest.mark.parametrize(
    "raw, normal", [("A.B:80", "a.b"), ("[::1]:443", "[::1]"), ("x.y.", "x.y"), ("::1", "::1")]
)
def test_normalize_host(raw, normal):
    assert normalize_host(raw) == normal


def test_contains():
    assert ZONE.contains("example.test") and ZONE.contains("a.b.example.test")
    assert not ZONE.contains("badexample.test")


WILD = Zone(
    "example.test",
    {"*.dev.example.test": f"{TID}.tunnels.example.test", "own.dev.example.test": "x.tunnels.example.test"},
    frozenset({TID}),
    {"_acme-challenge.dev.example.test": ("token",)},
)

WILDCARD_CASES = [
    ("a.dev.example.test", TID),
    ("a.b.dev.example.test", TID),
    ("dev.example.test", None),  # the wildcard is not its own parent
    ("own.dev.example.test", None),  # a name with its own record is not covered
    ("_acme-challenge.dev.example.test", None),  # nor is a name with only TXT
]


@pytest.mark.parametrize("host, expected", WILDCARD_CASES, ids=[c[0] for c in WILDCARD_CASES])
def test_wildcards_follow_rfc_4592(host, expected):
    assert WILD.tunnel_for(host) == expected


def test_zones_pick_the_longest_zone():
    inner = Zone("sub.example.test", {"app.sub.example.test": f"{TID}.tunnels.sub.example.test"}, frozenset({TID}))
    zones = Zones((ZONE, inner))
    assert zones.zone_for("app.sub.example.test") is inner
    assert zones.tunnel_for("app.sub.example.test") == TID
    assert zones.tunnel_for("app.example.test") == TID
    assert zones.zone_for("example.org") is None


def test_tunnel_names_are_the_edges_own():
    """`<uuid>.tunnels.<zone>` names its tunnel even under a wildcard covering the whole zone."""
    zone = Zone("example.test", {"*.example.test": "other.tunnels.example.test"}, frozenset({TID, "other"}))
    assert zone.tunnel_for(f"{TID}.tunnels.example.test") == TID
    assert zone.tunnel_for("anything.example.test") == "other"


def test_empty_non_terminals_exist_between_records_and_the_apex():
    assert WILD.empty_non_terminals == {"dev.example.test"}
