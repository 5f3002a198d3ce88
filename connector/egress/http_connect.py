"""Sans-IO HTTP CONNECT client (RFC 9110 §9.3.6) on h11: the request to send, then feed the
proxy's answer until it says whether the tunnel is open.

A 2xx opens the tunnel; 407 (and 401, which tinyproxy sends for a wrong password) is a
ProxyAuthError; any other status a ProxyRefused naming it.
The answer's head may be at most MAX_RESPONSE_HEAD bytes.
"""

from __future__ import annotations

import base64

import h11

from connector.egress.errors import ProxyAuthError, ProxyRefused
from shared.errors import ProtocolError

MAX_RESPONSE_HEAD = 16 * 1024
USER_AGENT = b"burrow"
AUTH_STATUSES = (401, 407)


class HttpConnect:
    """One CONNECT exchange: `request()` once, then `receive_data()` until it returns True."""

    def __init__(self, host: str, port: int, credentials: tuple[str, str] | None = None, proxy_name: str = "the proxy"):
        self.proxy_name = proxy_name  # for messages; redacted by the caller
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        authority = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode("ascii")
        self._authority = authority
        self._headers = [(b"host", authority), (b"user-agent", USER_AGENT)]
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode("ascii")
            self._headers.append((b"proxy-authorization", f"Basic {token}".encode("ascii")))
        self._authorized = credentials is not None
        self.leftover = b""

    def request(self) -> bytes:
        return self._conn.send(h11.Request(method=b"CONNECT", target=self._authority, headers=self._headers))

    def _next_event(self):
        try:
            return self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ProtocolError(f"{self.proxy_name} sent an invalid answer to CONNECT: {exc}") from None

    def data_to_send(self) -> bytes:
        """Nothing: CONNECT is one request and one answer (the same shape as `Socks5Connect`)."""
        return b""

    def receive_data(self, data: bytes) -> bool:
        """Feed the proxy's bytes (b"" at EOF); True once the tunnel is open (`leftover` then holds
        any bytes after the answer), False while more are needed; raises when refused."""
        if not data:
            raise ProtocolError(f"{self.proxy_name} closed the connection before answering CONNECT")
        self._conn.receive_data(data)
        event = self._next_event()
        while isinstance(event, h11.InformationalResponse):  # 1xx: the final answer follows
            event = self._next_event()
        if event is h11.NEED_DATA:
            return False
        status = f"{event.status_code} {event.reason.decode('latin-1')}".strip()
        if 200 <= event.status_code < 300:
            self.leftover, _ = self._conn.trailing_data
            return True
        if event.status_code in AUTH_STATUSES:
            if self._authorized:
                raise ProxyAuthError(f"{self.proxy_name} rejected the user name or password ({status})")
            raise ProxyAuthError(f"{self.proxy_name} requires a user name and password ({status})")
        raise ProxyRefused(f"{self.proxy_name} refused to CONNECT to {self._authority.decode()}: {status}")
