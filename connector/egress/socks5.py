"""Sans-IO SOCKS5 client (RFC 1928, user/password auth RFC 1929) on socksio: CONNECT to one
address, then feed the proxy's bytes until it says whether the tunnel is open.

socksio parses whole messages only, so this core frames them: it waits until the bytes of
one reply are all in, hands exactly those to socksio, and keeps the rest.
"""

from __future__ import annotations

from socksio import ProtocolError as SocksProtocolError
from socksio import socks5

from connector.egress.errors import ProxyAuthError, ProxyRefused
from shared.errors import ProtocolError

ADDRESS_LENGTHS = {1: 4, 4: 16}  # ATYP → address bytes; 3 (a domain name) has a length byte first


class Socks5Connect:
    """One SOCKS5 CONNECT: `request()` once, then `receive_data()` until it returns True.

    `host` is an IP address or, for socks5h, a name the proxy resolves."""

    def __init__(self, host: str, port: int, credentials: tuple[str, str] | None = None, proxy_name: str = "the proxy"):
        self.proxy_name = proxy_name
        self._target = (host, port)
        self._credentials = credentials
        self._conn = socks5.SOCKS5Connection()
        self._buffer = b""
        self.leftover = b""

    def request(self) -> bytes:
        methods = [socks5.SOCKS5AuthMethod.NO_AUTH_REQUIRED]
        if self._credentials is not None:
            methods.append(socks5.SOCKS5AuthMethod.USERNAME_PASSWORD)
        self._conn.send(socks5.SOCKS5AuthMethodsRequest(methods))
        return self._conn.data_to_send()

    def data_to_send(self) -> bytes:
        """What to send after a `receive_data()` call (the credentials, then the CONNECT)."""
        return self._conn.data_to_send()

    def receive_data(self, data: bytes) -> bool:
        """Feed the proxy's bytes (b"" at EOF); True once the tunnel is open (`leftover` then holds
        any bytes after the reply), False while more are needed (send `data_to_send()` first)."""
        if not data:
            raise ProtocolError(f"{self.proxy_name} closed the connection during the SOCKS5 handshake")
        self._buffer += data
        while (size := self._reply_size()) is not None and len(self._buffer) >= size:
            message, self._buffer = self._buffer[:size], self._buffer[size:]
            try:
                reply = self._conn.receive_data(message)
            except SocksProtocolError as exc:
                raise ProtocolError(f"{self.proxy_name} sent an invalid SOCKS5 reply: {exc}") from None
            if self._on_reply(reply):
                self.leftover, self._buffer = self._buffer, b""
                return True
        return False

    def _reply_size(self) -> int | None:
        """Bytes of the reply expected next, or None until enough of it is in to tell."""
        if self._conn.state != socks5.SOCKS5State.CLIENT_AUTHENTICATED:
            return 2  # method choice, or user/password verdict
        if len(self._buffer) < 5:
            return None
        atype = self._buffer[3]
        if atype == 3:
            return 4 + 1 + self._buffer[4] + 2
        if atype in ADDRESS_LENGTHS:
            return 4 + ADDRESS_LENGTHS[atype] + 2
        raise ProtocolError(f"{self.proxy_name} sent a SOCKS5 reply with an unknown address type {atype}")

    def _on_reply(self, reply) -> bool:
        if isinstance(reply, socks5.SOCKS5AuthReply):
            if reply.method == socks5.SOCKS5AuthMethod.USERNAME_PASSWORD:
                if self._credentials is None:
                    raise ProxyAuthError(f"{self.proxy_name} requires a user name and password")
                self._conn.send(socks5.SOCKS5UsernamePasswordRequest(*(part.encode() for part in self._credentials)))
            elif reply.method == socks5.SOCKS5AuthMethod.NO_AUTH_REQUIRED:
                self._send_connect()
            else:
                raise ProxyAuthError(f"{self.proxy_name} accepts none of the SOCKS5 authentication methods offered")
            return False
        if isinstance(reply, socks5.SOCKS5UsernamePasswordReply):
            if not reply.success:
                raise ProxyAuthError(f"{self.proxy_name} rejected the user name or password")
            self._send_connect()
            return False
        if reply.reply_code != socks5.SOCKS5ReplyCode.SUCCEEDED:
            reason = reply.reply_code.name.lower().replace("_", " ")
            host, port = self._target
            raise ProxyRefused(f"{self.proxy_name} refused to CONNECT to {host}:{port}: {reason}")
        return True

    def _send_connect(self) -> None:
        self._conn.send(socks5.SOCKS5CommandRequest.from_address(socks5.SOCKS5Command.CONNECT, self._target))
