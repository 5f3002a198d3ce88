"""The one hostname → tunnel lookup that DNS and the router share."""

import pytest

from edge.zone import Zone, normalize_host

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
