"""The origin client's wire format: request heads and framing, responses read by llhttp."""

import pytest

from connector.origins.errors import InvalidResponse
from connector.origins.http1_codec import Request, ResponseReader, write_request

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: a  \r\n\r\nok"


def read(*pieces: bytes, method: bytes = b"GET", upgrade: bool = False) -> ResponseReader:
    reader = ResponseReader()
    reader.start(method, upgrade)
    for piece in pieces:
        reader.feed(piece)
    return reader


def test_a_response_in_pieces_gives_lower_case_names_trimmed_values_and_its_body():
    reader = read(*(OK[i : i + 3] for i in range(0, len(OK), 3)))
    assert (reader.status, reader.headers) == (200, ((b"content-length", b"2"), (b"x-pad", b"a")))
    assert reader.take_body() == b"ok" and reader.done and reader.reusable


def test_informational_responses_are_skipped():
    reader = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)
    assert reader.status == 200 and (b"link", b"</a>") not in reader.headers and reader.take_body() == b"ok"


def test_the_next_response_on_a_kept_alive_connection():
    reader = read(OK)
    reader.take_body()
    reader.start(b"GET")
    reader.feed(OK.replace(b"ok", b"no"))
    assert reader.take_body() == b"no" and reader.done


def test_a_response_to_head_ends_with_its_head_and_the_connection_is_reused():
    reader = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", method=b"HEAD")
    assert reader.done and reader.reusable and reader.take_body() == b""
    reader.start(b"GET")
    reader.feed(OK)
    assert reader.take_body() == b"ok"


LONG_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"


@pytest.mark.parametrize(
    "pieces, reusable",
    [
        ([LONG_HEAD + b"0123", b"45", b"6789"], True),  # past the first read, counted without llhttp
        ([LONG_HEAD, b"0123456789"], True),
        ([LONG_HEAD + b"01", b"23456789junk"], False),  # bytes after the response
        ([LONG_HEAD.replace(b"OK", b"OK\r\nConnection: close"), b"0123456789"], False),
    ],
    ids=["pieces", "head-then-body", "bytes-after", "connection-close"],
)
def test_a_content_length_body_read_after_its_head(pieces, reusable):
    reader = read(*pieces)
    assert reader.done and reader.take_body() == b"0123456789" and reader.reusable is reusable
    if reusable:
        reader.start(b"GET")
        reader.feed(OK)
        assert reader.take_body() == b"ok" and reader.done


def test_a_content_length_body_cut_by_the_close_is_not_done():
    reader = read(LONG_HEAD + b"01", b"234")
    assert not reader.done and reader.take_body() == b"01234"
    reader.eof()
    assert not reader.done


def test_a_body_without_length_ends_at_the_close_and_the_connection_with_it():
    reader = read(b"HTTP/1.1 200 OK\r\n\r\nsome", b" more")
    assert not reader.done and reader.take_body() == b"some more"
    reader.eof()
    assert reader.done and not reader.reusable


@pytest.mark.parametrize(
    "raw",
    [
        OK + b"junk",
        OK.replace(b"HTTP/1.1", b"HTTP/1.0"),
        OK.replace(b"X-Pad", b"Connection: close\r\nX-Pad"),
    ],
    ids=["bytes-after", "http10", "connection-close"],
)
def test_connections_that_cannot_serve_another_request_are_not_reused(raw):
    reader = read(raw)
    assert reader.done and reader.take_body() == b"ok" and not reader.reusable


def test_a_101_hands_over_the_bytes_after_its_head():
    reader = read(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00", upgrade=True)
    assert reader.status == 101 and reader.trailing == b"\x81\x00" and not reader.reusable


@pytest.mark.parametrize(
    "raw, upgrade",
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", False),
        (b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", False),
    ],
    ids=["te-gzip", "te-list", "cl-and-te", "obs-fold", "bare-lf", "status-99", "101-unasked"],
)
def test_invalid_responses_are_refused(raw, upgrade):
    with pytest.raises(InvalidResponse):
        read(raw, upgrade=upgrade)


def test_request_heads_and_their_body_framing():
    head, framing = write_request(Request(b"PUT", b"/a?b", ((b"host", b"x"), (b"content-length", b"3"))))
    assert head == b"PUT /a?b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\n"
    assert framing.body(b"abc") == b"abc" and framing.end() == b""
    _, chunked = write_request(Request(b"POST", b"/", ((b"transfer-encoding", b"chunked"),)))
    assert chunked.body(b"hi") + chunked.end() == b"2\r\nhi\r\n0\r\n\r\n"
    _, bodiless = write_request(Request(b"GET", b"/", ()))
    with pytest.raises(ValueError):
        bodiless.body(b"smuggled")


@pytest.mark.parametrize(
    "request_",
    [
        Request(b"GET", b"/a b", ()),
        Request(b"G T", b"/", ()),
        Request(b"GET", b"/", ((b"x", b"a\r\nx-injected: 1"),)),
        Request(b"GET", b"/", ((b"x y", b"1"),)),
    ],
    ids=["space-in-target", "space-in-method", "crlf-in-value", "space-in-name"],
)
def test_what_cannot_be_written_is_a_value_error(request_):
    with pytest.raises(ValueError):
        write_request(request_)
