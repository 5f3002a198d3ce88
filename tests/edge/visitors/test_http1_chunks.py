"""The strict chunked-body scanner (RFC 9112 §7.1), fed whole and in pieces."""

import pytest

from edge.visitors.http1_chunks import ChunkScanner
from edge.visitors.http1_guard import Refused

GOOD = [
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5;name=val\r\nhello\r\n6 ; a = \"q\\\"x\" ;b\r\n world\r\n000\r\n\r\n",
    b"A\r\n0123456789\r\n0;last\r\nX-Trailer: 1\r\nY: two words\r\n\r\n",
    b"0\r\n\r\n",
]
BAD = {
    "0x-size": b"0x5\r\nhello\r\n0\r\n\r\n",
    "bare-lf-in-extension": b"5;a\nb\r\nhello\r\n0\r\n\r\n",
    "bare-lf-after-size": b"5\nhello\r\n0\r\n\r\n",
    "bare-cr-in-extension": b"5;a\rb\r\nhello\r\n0\r\n\r\n",
    "space-after-size": b"5 \r\nhello\r\n0\r\n\r\n",
    "space-before-size": b" 5\r\nhello\r\n0\r\n\r\n",
    "negative": b"-1\r\nhello\r\n0\r\n\r\n",
    "empty-size": b"\r\nhello\r\n0\r\n\r\n",
    "too-many-digits": b"1" + b"0" * 16 + b"\r\n",
    "extension-not-a-token": b"5;a b\r\nhello\r\n0\r\n\r\n",
    "extension-empty-value": b"5;a=\r\nhello\r\n0\r\n\r\n",
    "unterminated-quote": b'5;a="x\r\nhello\r\n0\r\n\r\n',
    "data-overrun": b"3\r\nhello\r\n0\r\n\r\n",
    "data-then-lf": b"5\r\nhello\n0\r\n\r\n",
    "bare-lf-in-trailer": b"5\r\nhello\r\n0\r\nX: y\n\r\n",
    "bad-trailer-name": b"5\r\nhello\r\n0\r\nX Y: z\r\n\r\n",
    "folded-trailer": b"5\r\nhello\r\n0\r\nX: y\r\n z\r\n\r\n",
    "long-size-line": b"5;" + b"a" * 5000 + b"\r\n",
    "large-trailers": b"0\r\n" + b"X: " + b"a" * 200 + b"\r\n",
}


def feed(data: bytes, step: int, max_trailer_bytes: int = 100) -> ChunkScanner:
    scanner = ChunkScanner(max_trailer_bytes)
    for start in range(0, len(data), step):
        scanner.feed(data[start : start + step])
    return scanner


@pytest.mark.parametrize("step", [1, 2, 7, 10_000])
@pytest.mark.parametrize("body", GOOD)
def test_valid_bodies_pass_and_bytes_after_the_end_are_not_read(body, step):
    scanner = feed(body + b"GET /next \n\x00", step)
    assert scanner.done


@pytest.mark.parametrize("step", [1, 3, 10_000])
@pytest.mark.parametrize("body", BAD.values(), ids=BAD.keys())
def test_framing_outside_the_grammar_is_refused_with_400(body, step):
    with pytest.raises(Refused) as refused:
        feed(body, step)
    assert refused.value.status == 400


def test_an_unfinished_body_is_not_done():
    assert not feed(b"5\r\nhel", 1).done
    assert not feed(b"5\r\nhello\r\n0\r\nX: 1\r\n", 1).done
