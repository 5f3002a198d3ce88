"""The public HTTPS listener: TLS with SNI certificates, then HTTP/2 or HTTP/1.1 as ALPN chose."""

from __future__ import annotations

import logging
import ssl

import trio

from edge.http1 import Http1Connection, Http1Limits
from edge.http2 import Http2Connection, Http2Limits
from edge.proxy import Proxy

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
ALPN = ["h2", "http/1.1"]


class HttpsFrontend:
    """Serves visitor connections accepted on the HTTPS listeners."""

    def __init__(
        self, proxy: Proxy, limits: Http1Limits = Http1Limits(), http2_limits: Http2Limits = Http2Limits()
    ) -> None:
        self.proxy = proxy
        self.limits = limits
        self.http2_limits = http2_limits
        self.connections: set[Http1Connection | Http2Connection] = set()

    def drain(self) -> None:
        """Tell every visitor connection the edge is shutting down (`Connection: close` / GOAWAY)."""
        for connection in list(self.connections):
            connection.drain()

    async def handle(self, stream: trio.SSLStream) -> None:
        client = _address(stream, "getpeername")
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await stream.do_handshake()
            server = _address(stream, "getsockname")
            if stream.selected_alpn_protocol() == "h2":
                connection = Http2Connection(stream, client, server, self.http2_limits)
            else:
                connection = Http1Connection(stream, client, server, self.limits)
            self.connections.add(connection)
            try:
                await connection.serve(self.proxy.handle)
            finally:
                self.connections.discard(connection)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, ssl.SSLError) as exc:
            log.debug("https.connection_ended client=%s error=%r", client[0], exc)
        except Exception:  # one visitor's failure must never stop the listener
            log.exception("https.connection_crashed client=%s", client[0])
        finally:
            await trio.aclose_forcefully(stream)


def _address(stream: trio.SSLStream, which: str) -> tuple[str, int]:
    try:
        host, port, *_ = getattr(stream.transport_stream.socket, which)()
    except (AttributeError, OSError):
        return ("0.0.0.0", 0)
    return host, port
