"""Half-closing a TLS byte pipe (`burrow access tcp|ssh|socks` ⇄ the edge's HTTPS listener).

TLS has no half-close that trio can send, so the side that finished sending shuts down
the TCP connection under TLS (a FIN without close_notify). The far side reads that as
the end of the peer's bytes and keeps sending, provided its context accepts it
(`accept_half_close`); without it OpenSSL calls the EOF a truncation and the stream breaks.
Truncation stays detectable where it matters: HTTP carries its own lengths, and a
byte pipe's EOF is the visitor's to give.
"""

from __future__ import annotations

import ssl

import trio


def accept_half_close(context: ssl.SSLContext) -> ssl.SSLContext:
    """Let `context`'s connections read a FIN without close_notify as EOF and still send.
    On a server, set it on the listener's context (an SNI callback's context does not count)."""
    context.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    return context


class HalfClosingTLS(trio.abc.HalfCloseableStream):
    """A `trio.SSLStream` whose `send_eof` shuts down the write side of the TCP connection under it;
    once it has, closing skips close_notify (nothing can follow the FIN)."""

    def __init__(self, tls: trio.SSLStream) -> None:
        self.tls = tls
        self.eof_sent = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self.tls.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.tls.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.tls.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        self.eof_sent = True
        await self.tls.transport_stream.send_eof()

    async def aclose(self) -> None:
        if self.eof_sent:
            await self.tls.transport_stream.aclose()
        else:
            await self.tls.aclose()
