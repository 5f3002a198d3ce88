"""The sans-IO request-head checks: piecewise scanning agrees with whole-head scanning."""

import pytest

from edge.visitors.http1_guard import HeadLimits, HeadScanner, Refused
from edge.visitors.http1_parser import RequestParser

LIMITS = HeadLimits()


def check_head(head: bytes, limits: HeadLimits):
    """A whole head through every check (the scanner's, the request line's, llhttp's, the fields')."""
    parser = RequestParser(limits, limits.max_header_bytes)
    parser.feed(head)
    return parser.head
GOOD = b"GET /a?b=1 HTTP/1.1\r\nHost: app.example.test\r\nX-A: 1\r\n\r\n"


def scan_in_pieces(data: bytes, size: int) -> bytes | None:
    scanner = HeadScanner(LIMITS)
    for start in range(0, len(data), size):
        if (head := scanner.feed(data[start : start + size])) is not None:
            return head
    return None


@pytest.mark.parametrize("size", [1, 2, 3, 5, 1000])
def test_a_head_split_anywhere_is_found_whole_and_body_bytes_are_not_checked(size):
    assert scan_in_pieces(GOOD + b"\x00\nbody", size) == GOOD
    assert check_head(GOOD, LIMITS).host == b"app.example.test"


@pytest.mark.parametrize("size", [1, 2, 1000])
@pytest.mark.parametrize(
    "data, status",
    [
        (b"GET / HTTP/1.1\nHost: x\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nA: \x00\r\n", 400),
        (b"GET /" + b"a" * 9000, 414),
        (b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 70_000, 431),
    ],
    ids=["bare-lf", "nul", "long-line", "large-head"],
)
def test_a_bad_partial_head_is_refused_before_it_completes(data, status, size):
    with pytest.raises(Refused) as refused:
        scan_in_pieces(data, size)
    assert refused.value.status == status


def test_absolute_form_becomes_origin_form():
    head = b"GET https://App.Example.test:443/p?q HTTP/1.1\r\nHost: app.example.test:443\r\n\r\n"
    assert check_head(head, LIMITS).target == b"/p?q"
