"""Issue 16 acceptance 7: stripPathPrefix and the header edits, through a real edge and
connector, checked against a recording origin (what it received) and curl (what came back)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ZONE
from tests.e2e.recording_origin import start_recording_origin
from tests.e2e.tunnels import run_tunnel

EDITS = {
    "stripPathPrefix": "/api",
    "setRequestHeaders": {"X-Team": "blue", "X-Api-Version": 2},
    "removeRequestHeaders": ["Cookie", "Burrow-Request-Id"],
    "setResponseHeaders": {"Cache-Control": "no-store", "Strict-Transport-Security": "max-age=60"},
    "removeResponseHeaders": ["Server", "X-Powered-By"],
}


@pytest.fixture(scope="module")
def record(edge):
    server, record = start_recording_origin([("server", "recorder/1"), ("x-powered-by", "h11"), ("cache-control", "max-age=9")])
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    run_tunnel(edge, "rewrites", [("rw", origin, EDITS), ("plain", origin)])
    yield record
    server.shutdown()


def request(edge, label: str, path: str, *extra: str) -> dict[str, str]:
    """curl through the edge; the response headers (lower-case names)."""
    result = edge.curl(f"{label}.{ZONE}", path, "-sS", "-D", "-", "-o", "/dev/null", *extra)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().split("\r\n")
    assert lines[0].split()[1] == "200", lines
    return dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)


@pytest.mark.parametrize(
    "marker, path, target, prefix",
    [
        ("below", "/api/users?id=7", "/users?id=7", ["/api"]),
        ("exact", "/api", "/", ["/api"]),
        ("outside", "/apiary", "/apiary", []),
    ],
)
def test_request_rewritten_and_response_edited(edge, record, marker, path, target, prefix):
    headers = request(edge, "rw", path, "-H", f"X-Marker: {marker}", "-H", "Cookie: session=secret", "-H", "X-Team: red")
    (received,) = record.matching(marker)
    assert received.target == target
    assert received.header("x-forwarded-prefix") == prefix
    assert received.header("x-team") == ["blue"] and received.header("x-api-version") == ["2"]
    assert received.header("cookie") == [] and received.header("burrow-request-id") == []
    assert received.header("x-forwarded-for") == ["127.0.0.1"]  # what the rule does not name passes
    assert "server" not in headers and "x-powered-by" not in headers
    assert headers["cache-control"] == "no-store" and headers["strict-transport-security"] == "max-age=60"


def test_a_rule_without_edits_changes_nothing(edge, record):
    headers = request(edge, "plain", "/api/x", "-H", "X-Marker: plain-one", "-H", "Cookie: a=1")
    (received,) = record.matching("plain-one")
    assert received.target == "/api/x" and received.header("cookie") == ["a=1"]
    assert received.header("burrow-request-id") and not received.header("x-forwarded-prefix")
    assert headers["server"] == "recorder/1" and headers["cache-control"] == "max-age=9"
