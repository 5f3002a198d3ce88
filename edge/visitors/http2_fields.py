"""HTTP/2 header fields ⇄ the heads the proxy speaks (sans-IO): pseudo-headers, RFC 8441's
WebSocket CONNECT as an HTTP/1.1 Upgrade, and the fields HTTP/2 forbids in responses."""

from __future__ import annotations

import base64
import hashlib
import os
import re

import h2.exceptions
import hpack
from h2.errors import ErrorCodes

from edge.visitors.http1_guard import HOST, TOKEN
from edge.visitors.http2_guards import Http2Limits
from shared.events import Headers, RequestHead

# RFC 9113 §8.2.2: connection-specific fields have no place in HTTP/2 ("te" only as "trailers").
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
WEBSOCKET = b"websocket"
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
SCHEMES = (b"http", b"https")  # what an HTTP server answers for; the edge uses the connection's
PATH = re.compile(rb"/[\x21-\x7e]*")  # origin-form: visible ASCII, as an HTTP/1.1 request line allows


class MalformedRequest(Exception):
    """RFC 9113 §8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR."""


class CompressionError(h2.exceptions.ProtocolError):
    """A header block HPACK cannot decode: connection error COMPRESSION_ERROR (RFC 9113 §4.3)."""

    error_code = ErrorCodes.COMPRESSION_ERROR


class StrictDecoder(hpack.Decoder):
    """h2's HPACK decoder, reporting decoding errors as COMPRESSION_ERROR (h2 says PROTOCOL_ERROR)."""

    def decode(self, data: bytes, raw: bool = False):
        try:
            return super().decode(data, raw)
        except hpack.OversizedHeaderListError:
            raise  # an HPACK bomb: h2 answers ENHANCE_YOUR_CALM
        except (hpack.HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise CompressionError(f"HPACK decoding failed: {exc}") from exc


def request_head(
    headers: Headers, has_body: bool, scheme: bytes, limits: Http2Limits
) -> tuple[RequestHead, tuple[int, str] | None]:
    """The request h2 decoded, as the proxy sees it, and a (status, reason) if it must be refused.

    :authority becomes the Host an HTTP/1 origin needs. The scheme is the
    connection's, not the client's claim. Raises `MalformedRequest` for pseudo-header
    values h2 lets through (RFC 9113 §8.3.1).
    """
    pseudo: dict[bytes, bytes] = {}
    regular: list[tuple[bytes, bytes]] = []
    size = 0
    for name, value in headers:
        size += len(name) + len(value) + 32  # RFC 9113 §6.5.2 accounting
        if name.startswith(b":"):
            pseudo[name] = value
        else:
            regular.append((name, value))
    authority = pseudo.get(b":authority")
    if authority:
        regular = [(b"host", authority), *((name, value) for name, value in regular if name != b"host")]
    else:
        authority = next((value for name, value in regular if name == b"host"), b"")
    method = pseudo.get(b":method", b"")
    _check_pseudo(pseudo, authority)
    # No END_STREAM on HEADERS may still mean no body, as HTTP/1.1 has it: content-length 0.
    has_body = has_body and all(value.strip() != b"0" for name, value in regular if name == b"content-length")
    head = RequestHead(method, pseudo.get(b":path", b""), authority, scheme, tuple(regular), has_body)
    if len(regular) > limits.max_header_fields:
        return head, (431, f"more than {limits.max_header_fields} header fields")
    if size > limits.max_header_list_size:
        return head, (431, f"header list larger than {limits.max_header_list_size} bytes")
    if method == b"CONNECT":
        protocol = pseudo.get(b":protocol")
        if protocol is None:
            return head, (501, "CONNECT is not supported")
        if protocol.lower() != WEBSOCKET:
            return head, (501, f"extended CONNECT for {protocol.decode('latin-1')!r} is not supported")
        return websocket_upgrade(head), None
    if head.target == b"*":
        return head, (400, "asterisk-form (OPTIONS *) is not supported")  # as on HTTP/1.1
    return head, None


def _check_pseudo(pseudo: dict[bytes, bytes], authority: bytes) -> None:
    """:method a token; :path origin-form, or `*` for OPTIONS; :authority (or Host) a host
    and port, without userinfo; :scheme `http` or `https`. A plain CONNECT carries only
    :method and :authority (h2 checks which pseudo-headers are present)."""
    method = pseudo.get(b":method", b"")
    if not TOKEN.fullmatch(method):
        raise MalformedRequest(f"invalid :method {method!r}")
    if not HOST.fullmatch(authority):
        raise MalformedRequest(f"invalid :authority {authority!r}")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        return
    path = pseudo.get(b":path", b"")
    if not (PATH.fullmatch(path) or (path == b"*" and method == b"OPTIONS")):
        raise MalformedRequest(f"invalid :path {path!r}")
    if pseudo.get(b":scheme") not in SCHEMES:
        raise MalformedRequest(f"invalid :scheme {pseudo.get(b':scheme')!r}")


def websocket_upgrade(head: RequestHead) -> RequestHead:
    """An RFC 8441 CONNECT as the HTTP/1.1 Upgrade request the tunnel and origin speak
    (RFC 6455 §4.1), with a fresh Sec-WebSocket-Key the edge checks the answer against."""
    key = base64.b64encode(os.urandom(16))
    headers = tuple((name, value) for name, value in head.headers if name != b"sec-websocket-key")
    headers += ((b"connection", b"upgrade"), (b"upgrade", WEBSOCKET), (b"sec-websocket-key", key))
    return RequestHead(b"GET", head.target, head.authority, head.scheme, headers, has_body=False)


def websocket_accept(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept an origin must answer `key` with (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest())


def response_headers(headers: Headers) -> Headers:
    """Response fields fit for HTTP/2: lower-case, no connection-specific fields."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    kept = []
    for name, value in headers:
        name = name.lower()
        if name in CONNECTION_SPECIFIC or name in named:
            continue
        if name == b"te" and value.strip().lower() != b"trailers":
            continue
        kept.append((name, value))
    return tuple(kept)


def trailer_fields(headers: Headers) -> Headers:
    """Trailing fields fit for HTTP/2: no pseudo-headers, no connection-specific fields."""
    return tuple((name, value) for name, value in response_headers(headers) if not name.startswith(b":") and name != b"te")
