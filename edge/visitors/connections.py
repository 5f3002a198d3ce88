"""Visitor connections on the edge's listeners: their addresses, and a cap per client IP."""

from __future__ import annotations

from collections import Counter

import trio

DEFAULT_MAX_CONNECTIONS_PER_IP = 256


class ConnectionsPerIp:
    """How many connections each client IP holds on one listener; `admit` refuses over `limit`."""

    def __init__(self, limit: int = DEFAULT_MAX_CONNECTIONS_PER_IP) -> None:
        self.limit = limit
        self.counts: Counter[str] = Counter()

    def admit(self, ip: str) -> bool:
        if self.counts[ip] >= self.limit:
            return False
        self.counts[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self.counts[ip] -= 1
        if not self.counts[ip]:
            del self.counts[ip]


def socket_address(stream: trio.abc.Stream, which: str) -> tuple[str, int]:
    """`getpeername` / `getsockname` of a socket stream, or of the one under a TLS stream."""
    sock = getattr(getattr(stream, "transport_stream", stream), "socket", None)
    try:
        host, port, *_ = getattr(sock, which)()
    except (AttributeError, OSError):
        return ("0.0.0.0", 0)
    return host, port
