"""Events every side speaks: the eyeball adapters, the tunnel and the origin client.

Header names are lower-case bytes; values are bytes as received.
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = tuple[tuple[bytes, bytes], ...]

# Hop-by-hop headers (RFC 9110 §7.6.1): dropped wherever a message leaves Burrow.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


class _Message:
    """What request and response heads share: looking up a header."""

    __slots__ = ()
    headers: Headers

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


# The heads and the session's events are values: never assigned once built. They are not
# `frozen` dataclasses, and each writes its own `__init__`: compiled, a dataclass's generated
# `__init__` runs as Python (a frozen one sets each field through `object.__setattr__`),
# ≈ 0.7 µs a RequestHead against ≈ 0.1 µs for a compiled one, several times a request.


@dataclass(slots=True, init=False)
class RequestHead(_Message):
    """A request as the edge received it from a visitor."""

    method: bytes
    target: bytes  # path and query, as sent
    authority: bytes  # the Host, with any port
    scheme: bytes
    headers: Headers
    has_body: bool

    def __init__(
        self, method: bytes, target: bytes, authority: bytes, scheme: bytes = b"https", headers: Headers = (),
        has_body: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.authority = authority
        self.scheme = scheme
        self.headers = headers
        self.has_body = has_body


@dataclass(slots=True, init=False)
class ResponseHead(_Message):
    """A response status line and headers."""

    status: int
    headers: Headers
    has_body: bool

    def __init__(self, status: int, headers: Headers = (), has_body: bool = True) -> None:
        self.status = status
        self.headers = headers
        self.has_body = has_body


def end_to_end(headers: Headers) -> Headers:
    """`headers` without hop-by-hop fields, including those named in Connection."""
    for key, _ in headers:
        if key in HOP_BY_HOP:
            break
    else:  # the usual case: nothing to drop (a Connection header is itself hop-by-hop)
        return headers
    named = {
        token.strip().lower()
        for key, value in headers
        if key == b"connection"
        for token in value.split(b",")
    }
    return tuple((k, v) for k, v in headers if k not in HOP_BY_HOP and k not in named)
