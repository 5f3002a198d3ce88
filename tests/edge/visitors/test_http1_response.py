"""The sans-IO response writer: framing and keep-alive as h11 chose them."""

import pytest

from edge.visitors.http1_response import Response, informational

CL = ((b"content-length", b"5"),)


def written(response: Response, status: int, headers, *body: bytes, closing: bool = False) -> bytes:
    return response.head(status, headers, closing) + b"".join(response.body(piece) for piece in body) + response.end()


def test_content_length_keeps_the_connection_alive():
    response = Response(b"GET", http10=False, keep_alive=True)
    assert written(response, 200, CL, b"he", b"llo") == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    assert response.keep_alive and response.ended


def test_without_a_length_an_http11_visitor_gets_chunks_and_an_http10_one_the_close():
    assert written(Response(b"GET", False, True), 200, (), b"hi") == (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    )
    response = Response(b"GET", http10=True, keep_alive=False)
    assert written(response, 200, (), b"hi") == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhi"
    assert not response.keep_alive


@pytest.mark.parametrize("method, status", [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)])
def test_bodiless_responses_keep_their_headers_and_send_no_body(method, status):
    response = Response(method, False, True)
    head = response.head(status, CL, False)
    assert head.endswith(b"content-length: 5\r\n\r\n") and response.end() == b""
    assert response.keep_alive
    no_length = Response(method, False, True).head(status, (), False)
    assert (b"transfer-encoding" in no_length) == (method == b"HEAD")


def test_head_without_a_length_announces_chunks_but_sends_none():
    response = Response(b"HEAD", False, True)
    assert b"transfer-encoding: chunked" in response.head(200, (), False)
    assert response.end() == b""


def test_closing_and_the_visitors_close_say_connection_close():
    assert written(Response(b"GET", False, True), 200, CL, b"hello", closing=True).count(b"connection: close") == 1
    response = Response(b"GET", False, keep_alive=False)
    assert b"connection: close" in written(response, 200, CL, b"hello") and not response.keep_alive


def test_equal_content_lengths_are_merged_as_h11_merged_them():
    head = Response(b"GET", False, True).head(200, ((b"content-length", b"5, 5"), (b"x", b"1"), (b"content-length", b"5")), False)
    assert head == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx: 1\r\n\r\n"


@pytest.mark.parametrize(
    "status, headers, body",
    [
        (200, ((b"content-length", b"3, 4"),), []),
        (200, ((b"content-length", b"-1"),), []),
        (200, ((b"bad name", b"v"),), []),
        (200, ((b"x", b"a\r\nset-cookie: evil"),), []),
        (200, ((b"x", b"a\x00"),), []),
        (200, ((b"", b"v"),), []),
        (101, (), []),
        (200, CL, [b"toolong"]),
        (200, CL, [b"shrt"]),
        (204, (), [b"x"]),
        (304, CL, [b"x"]),
    ],
    ids=["conflicting-lengths", "negative-length", "bad-name", "crlf-in-value", "nul-in-value", "empty-name",
         "1xx-as-final", "body-over-length", "body-under-length", "body-in-204", "body-in-304"],
)
def test_a_response_the_tunnel_got_wrong_is_a_value_error(status, headers, body):
    with pytest.raises(ValueError):
        written(Response(b"GET", False, True), status, headers, *body)


def test_informational_heads():
    assert informational(100, ()) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert informational(101, ((b"upgrade", b"websocket"),)).startswith(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n")
