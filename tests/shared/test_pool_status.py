"""shared/pool_status.py: the pool-status document, its size bound, no userinfo, strict parsing."""

from __future__ import annotations

import json

import pytest

from shared import pool_status
from shared.pool_status import OriginState, PoolState, decode, encode, public_url


def pool(name: str = "web", origins: int = 2) -> PoolState:
    members = tuple(
        OriginState(f"http://127.0.0.1:{9000 + i}", i % 2 == 0, i, 10 * i, i, i % 2 == 0 if i else None, 1.7e9 + i if i else None)
        for i in range(origins)
    )
    return PoolState(name, "least_requests", True, 3, members)


def test_round_trip():
    pools = [pool("a"), pool("b", 3)]
    report = decode(encode(pools))
    assert report.pools == tuple(pools) and not report.truncated


def test_pools_beyond_the_size_limit_are_left_out_and_marked():
    many = [pool(f"pool-{i:04d}", 16) for i in range(200)]
    body = encode(many)
    report = decode(body)
    assert len(body) <= pool_status.MAX_STATUS_BYTES
    assert report.truncated and 0 < len(report.pools) < 200
    assert report.pools == tuple(many[: len(report.pools)])


@pytest.mark.parametrize(
    "url, shown",
    [
        ("http://user:secret@127.0.0.1:8080/x", "http://127.0.0.1:8080/x"),
        ("https://:tok@origin.internal", "https://origin.internal"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("unix:/run/app.sock", "unix:/run/app.sock"),
    ],
)
def test_public_url_drops_userinfo(url, shown):
    assert public_url(url) == shown


def test_public_url_is_bounded():
    shown = public_url("http://127.0.0.1/" + "a" * 1000)
    assert len(shown) == pool_status.MAX_URL_LENGTH and shown.endswith("…")


def test_decode_strips_userinfo_a_connector_sent_anyway():
    body = encode([PoolState("web", "random", False, 0, (OriginState("http://u:p@h:1", True, 0, 0, 0),))])
    assert decode(body).pools[0].origins[0].url == "http://h:1"


@pytest.mark.parametrize(
    "body",
    [
        b"", b"[]", b'{"pools": 1}', b'{"pools": [{"name": "x"}]}', b"\xff",
        b'{"pools": [{"name": "x", "policy": "p", "checked": true, "retries": Infinity, "origins": []}]}',
        b"[" * 100_000,
        b" " * (pool_status.MAX_STATUS_BYTES + 1),
    ],
)
def test_decode_refuses_what_is_not_a_report(body):
    with pytest.raises(ValueError):
        decode(body)


def test_decode_ignores_impossible_check_times():
    raw = json.loads(encode([pool()]))
    raw["pools"][0]["origins"][1]["checked_at"] = 1e300
    raw["pools"][0]["origins"][0]["last_check"] = "yes"
    origins = decode(json.dumps(raw).encode()).pools[0].origins
    assert origins[1].checked_at is None and origins[0].last_check is None
