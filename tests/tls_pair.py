"""A connected pair of `shared.tls_socket.TLSSocketStream`s over a real socket pair, for tests."""

import ssl

import trio
import trustme

from shared.tls_socket import TLSSocketStream

SERVER_NAME = "tunnel.example.test"


def tls_contexts(alpn: list[str] | None = None) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts: the server's certificate for SERVER_NAME from a fresh trustme CA."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(SERVER_NAME).configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    if alpn:
        server_context.set_alpn_protocols(alpn)
        client_context.set_alpn_protocols(alpn)
    return server_context, client_context


async def tls_socket_pair(alpn: list[str] | None = None) -> tuple[TLSSocketStream, TLSSocketStream]:
    """(client, server), handshake done."""
    server_context, client_context = tls_contexts(alpn)
    client_sock, server_sock = trio.socket.socketpair()
    client = TLSSocketStream.wrap(client_sock, client_context, server_hostname=SERVER_NAME)
    server = TLSSocketStream.wrap(server_sock, server_context, server_side=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    return client, server
