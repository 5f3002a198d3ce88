"""The head of a public-port stream (kinds `tcp` and `udp`): which public port the visitor
reached and the visitor's address, for the connector's `tcp:` / `udp:` lists and
`proxyProtocol`. The connector answers 200 once its origin is reached (then bytes, or
datagrams, flow), or an error status with a one-line reason as the body."""

from __future__ import annotations

from shared.events import RequestHead

METHOD = b"CONNECT"
CONNECTING_IP, CONNECTING_PORT = b"burrow-connecting-ip", b"burrow-connecting-port"
MAX_REASON = 1024  # bytes of the reason an error answer carries


def port_head(protocol: str, port: int, visitor: tuple[str, int]) -> RequestHead:
    headers = ((CONNECTING_IP, visitor[0].encode("ascii")), (CONNECTING_PORT, str(visitor[1]).encode("ascii")))
    return RequestHead(METHOD, str(port).encode("ascii"), b"", protocol.encode("ascii"), headers, has_body=True)


def port_of(head: RequestHead) -> int | None:
    """The public port a port stream's head names; None when it names none."""
    target = head.target
    return int(target) if target.isdigit() and len(target) <= 5 else None
