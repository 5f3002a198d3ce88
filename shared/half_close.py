"""Half-closing a TLS byte pipe (`burrow access tcp|ssh|socks` ⇄ the edge's HTTPS listener).

TLS has no half-close, so the side that finished sending shuts down the TCP connection
under TLS (a FIN without close_notify: `shared.tls_socket.TLSSocketStream.send_eof`). The far side reads that as
the end of the peer's bytes and keeps sending, provided its context accepts it
(`accept_half_close`); without it OpenSSL calls the EOF a truncation and the stream breaks.
Truncation stays detectable where it matters: HTTP carries its own lengths, and a
byte pipe's EOF is the visitor's to give.
"""

from __future__ import annotations

import ssl


def accept_half_close(context: ssl.SSLContext) -> ssl.SSLContext:
    """Let `context`'s connections read a FIN without close_notify as EOF and still send.
    On a server, set it on the listener's context (an SNI callback's context does not count)."""
    context.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    return context
