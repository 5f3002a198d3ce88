"""Open a TCP stream to HOST:PORT, directly or through a proxy (the trio shell of the cores).

The caller bounds the whole dial in time (the proxy's TCP connect and its handshake included).
"""

from __future__ import annotations

import ipaddress
import os
import socket

import trio

from connector.egress.errors import ProxyRefused
from connector.egress.http_connect import HttpConnect
from connector.egress.proxies import ProxyURL
from connector.egress.socks5 import Socks5Connect
from shared.errors import ProtocolError, Unreachable

READ_SIZE = 4096


async def open_tcp_stream(
    host: str, port: int, proxy: ProxyURL | None = None, local_address: str | None = None
) -> trio.SocketStream:
    """A TCP stream to `host:port` (from `local_address`, if given); through `proxy` when one is
    given (see `ProxyChoice.for_host`)."""
    if proxy is None:
        return await trio.open_tcp_stream(host, port, local_address=local_address)
    name = f"proxy {proxy}"
    try:
        stream = await trio.open_tcp_stream(proxy.host, proxy.port, local_address=local_address)
    except OSError as exc:
        raise Unreachable(f"cannot reach {name}: {_reason(exc)}") from None
    try:
        await _handshake(stream, await _core(proxy, name, host, port), name)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _core(proxy: ProxyURL, name: str, host: str, port: int) -> HttpConnect | Socks5Connect:
    if proxy.scheme == "http":
        return HttpConnect(host, port, proxy.credentials, name)
    if proxy.scheme == "socks5" and not _is_address(host):  # socks5h: the proxy resolves the name
        host = await _resolve(host, port)
    return Socks5Connect(host, port, proxy.credentials, name)


async def _handshake(stream: trio.SocketStream, core: HttpConnect | Socks5Connect, name: str) -> None:
    try:
        await stream.send_all(core.request())
        while not core.receive_data(await stream.receive_some(READ_SIZE)):
            if pending := core.data_to_send():
                await stream.send_all(pending)
    except (OSError, trio.BrokenResourceError) as exc:
        raise Unreachable(f"{name} dropped the connection: {_reason(exc)}") from None
    if core.leftover:  # the edge speaks only after our TLS ClientHello: these bytes cannot be its
        raise ProtocolError(f"{name} sent {len(core.leftover)} unexpected bytes after opening the tunnel")


async def _resolve(host: str, port: int) -> str:
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ProxyRefused(f"cannot resolve {host} (use socks5h:// to let the proxy resolve it): {_reason(exc)}") from None
    return infos[0][4][0]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    """The OS's words: trio wraps them (BrokenResourceError; "all attempts to connect" over a group)."""
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
    if isinstance(cause.__cause__, BaseExceptionGroup) and cause.__cause__.exceptions:
        cause = cause.__cause__.exceptions[0]
    errno = getattr(cause, "errno", None)
    return (os.strerror(errno) if errno else None) or getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
