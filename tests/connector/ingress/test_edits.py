"""connector/ingress/edits.py: stripPathPrefix and the header edits, as each rule makes them."""

from __future__ import annotations

import pytest

from connector.ingress.edits import Edits, strip_prefix
from connector.ingress.rules import Ingress
from shared.events import RequestHead, ResponseHead


def edits(**origin_request) -> Edits | None:
    return Ingress.from_rules([{"service": "http://x", "originRequest": origin_request}]).rules[0].edits


@pytest.mark.parametrize(
    "target, expected",
    [
        (b"/api", b"/"),
        (b"/api/", b"/"),
        (b"/api/users/7?x=1", b"/users/7?x=1"),
        (b"/api?x=1", b"/?x=1"),
        (b"/apiary", None),
        (b"/v1/api/x", None),
        (b"/API/x", None),  # paths are case-sensitive
        (b"*", None),
    ],
)
def test_strip_prefix_only_at_a_segment_boundary(target, expected):
    assert strip_prefix(target, b"/api") == expected


def test_a_rule_without_edits_has_none():
    assert edits() is None and edits(connectTimeout="5s") is None


def test_a_trailing_slash_in_the_prefix_is_dropped():
    assert edits(stripPathPrefix="/api/").strip_prefix == b"/api"


def test_request_edits():
    head = RequestHead(
        b"GET", b"/api/v1?q", b"app.test",
        headers=((b"host", b"app.test"), (b"cookie", b"a=1"), (b"x-team", b"old"), (b"x-forwarded-prefix", b"/spoof")),
    )
    rule = edits(stripPathPrefix="/api", setRequestHeaders={"X-Team": "blue", "X-Num": 2}, removeRequestHeaders=["Cookie"])
    edited = rule.request(head)
    assert edited.target == b"/v1?q" and edited.authority == b"app.test" and edited.method == b"GET"
    assert edited.headers == (
        (b"host", b"app.test"), (b"x-forwarded-prefix", b"/api"), (b"x-team", b"blue"), (b"x-num", b"2"),
    )
    outside = rule.request(RequestHead(b"GET", b"/other", b"app.test", headers=((b"x-forwarded-prefix", b"/p"),)))
    assert outside.target == b"/other" and outside.headers == ((b"x-forwarded-prefix", b"/p"), (b"x-team", b"blue"), (b"x-num", b"2"))


def test_response_edits():
    rule = edits(setResponseHeaders={"Cache-Control": "no-store"}, removeResponseHeaders=["Server", "X-Powered-By"])
    head = ResponseHead(200, ((b"server", b"gunicorn"), (b"cache-control", b"max-age=60"), (b"x-powered-by", b"php"), (b"etag", b"1")))
    assert rule.response(head) == ResponseHead(200, ((b"etag", b"1"), (b"cache-control", b"no-store")))
    assert edits(setRequestHeaders={"A": "b"}).response(head) is head
