"""`burrow access tcp/ssh`: a local listener (or stdin/stdout) ⇄ a `burrow-tcp` upgrade
through the edge, which the connector turns into a TCP connection to the rule's origin.

Each local connection dials the edge over TLS (SNI = the hostname), sends
`GET / HTTP/1.1` with `Upgrade: burrow-tcp`, and after the 101 relays raw bytes.
Half-closes cross both ways: a local client's EOF reaches the origin, which may still
answer, and the origin's EOF reaches the client, which may still send (`shared.half_close`).
"""

from __future__ import annotations

import logging
import os
import ssl
import sys
from dataclasses import dataclass

import h11
import trio

from shared.errors import BurrowError, ConfigError, Unreachable
from shared.half_close import accept_half_close
from shared.tls_socket import TLSSocketStream
from shared.values import format_hostport

log = logging.getLogger(__name__)

TCP_UPGRADE = b"burrow-tcp"
CONNECT_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0
UPGRADE_TIMEOUT = 15.0
READ_SIZE = 64 * 1024
MAX_HEAD = 64 * 1024
MAX_ERROR_BODY = 4096


class NotATcpRoute(BurrowError):
    """The edge answered the upgrade with something other than 101."""


class UpgradeRefused(BurrowError):
    """The edge answered an upgrade with `status` (not 101); `detail` is its first line."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.headers = headers


@dataclass(frozen=True)
class Target:
    hostname: str
    edge_host: str
    edge_port: int
    ca_file: str | None = None
    ca_pem: str | None = None  # the edge CA pinned in the account credential


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise ConfigError(f"{text!r}: expected HOST:PORT")
        return text, default_port
    host = host.strip("[]")
    if not port.isdigit():
        raise ConfigError(f"{text!r}: the port must be a number")
    if int(port) > 65535:
        raise ConfigError(f"{text!r}: the port must be at most 65535")
    return host, int(port)


def _context(ca_file: str | None, ca_pem: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--ca-file {ca_file}: {exc}") from exc
    context.set_alpn_protocols(["http/1.1"])
    return accept_half_close(context)


async def open_upgraded(target: Target) -> tuple[TLSSocketStream, bytes]:
    """Dial the edge and switch to `burrow-tcp`; returns the stream and bytes read past the 101."""
    try:
        return await dial_upgrade(target, TCP_UPGRADE)
    except UpgradeRefused as exc:
        if exc.status in (502, 503, 504):
            raise Unreachable(f"{target.hostname}: the TCP origin is unavailable (edge answered {exc})") from None
        raise NotATcpRoute(f"{target.hostname} is not a TCP route (edge answered {exc})") from None


async def dial_upgrade(
    target: Target, protocol: bytes, headers: tuple[tuple[str, bytes], ...] = (), context: ssl.SSLContext | None = None
) -> tuple[TLSSocketStream, bytes]:
    """Dial the edge and switch to `protocol`, sending `headers`; returns the stream and bytes read
    past the 101, or raises UpgradeRefused with the edge's answer."""
    where = f"{target.edge_host}:{target.edge_port}"
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            tcp = await trio.open_tcp_stream(target.edge_host, target.edge_port)
    except (OSError, trio.TooSlowError) as exc:
        raise Unreachable(f"cannot reach the edge at {where}: {exc or 'timed out'}") from exc
    stream = TLSSocketStream.wrap(tcp.socket, context or edge_context(target), server_hostname=target.hostname)
    try:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            await stream.do_handshake()
        with trio.fail_after(UPGRADE_TIMEOUT):
            return stream, await _upgrade(stream, target.hostname, protocol, headers)
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream)
        raise Unreachable(f"the edge at {where} did not answer in time") from None
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(stream)
        raise Unreachable(f"TLS to the edge at {where} failed: {exc.__cause__ or exc}") from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


def edge_context(target: Target) -> ssl.SSLContext:
    """The TLS context for dialing the edge (build it once for many connections)."""
    return _context(target.ca_file, target.ca_pem)


async def _upgrade(stream: trio.abc.Stream, hostname: str, protocol: bytes, headers) -> bytes:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    request = h11.Request(
        method="GET",
        target="/",
        headers=[("host", hostname), ("connection", "Upgrade"), ("upgrade", protocol), ("user-agent", "burrow-access"), *headers],
    )
    await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
    body = b""
    response = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(READ_SIZE)
            conn.receive_data(data)
            if not data and response is None:
                raise Unreachable("the edge closed the connection before answering")
            continue
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            return bytes(conn.trailing_data[0])
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data) and len(body) < MAX_ERROR_BODY:
            body += bytes(event.data)
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    lines = body.decode("utf-8", "replace").strip().splitlines()
    status = response.status_code
    detail = lines[0] if lines and lines[0].startswith(f"{status} ") else f"{status} {response.reason.decode()}"
    raise UpgradeRefused(status, list(response.headers), detail)


async def splice(a: trio.abc.Stream, b: trio.abc.Stream, first_to_a: bytes = b"") -> None:
    """Copy bytes both ways; EOF one way half-closes (or closes) the other side."""

    async def copy(src: trio.abc.Stream, dst: trio.abc.Stream, first: bytes) -> None:
        if first:
            await dst.send_all(first)
        while True:
            try:
                data = await src.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                break
            await dst.send_all(data)
        if isinstance(dst, trio.abc.HalfCloseableStream):
            try:
                await dst.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(copy, b, a, first_to_a)
            nursery.start_soon(copy, a, b, b"")
    except* (trio.BrokenResourceError, trio.ClosedResourceError) as group:
        log.debug("access.broken error=%s", group.exceptions[0])


async def listen_locally(host: str, port: int, option: str) -> list[trio.SocketListener]:
    """The local listeners of `option` (HOST:PORT), or one clear ConfigError (port in use, no such address…)."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:  # in use, not an address of this machine, an unknown name, below 1024 without privileges
        raise ConfigError(f"cannot listen on {format_hostport((host, port))} ({option}): {exc.strerror or exc}") from None


async def serve_tcp(target: Target, listen_host: str, listen_port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """`burrow access tcp`: one upgraded edge connection per accepted local connection."""
    listeners = await listen_locally(listen_host, listen_port, "--url")
    log.info("access.listening address=%s:%d hostname=%s", listen_host, listeners[0].socket.getsockname()[1], target.hostname)
    task_status.started(listeners[0].socket.getsockname()[1])

    async def handle(local: trio.SocketStream) -> None:
        """One local connection; whatever ends it, the listener serves on."""
        try:
            async with local:
                try:
                    remote, first = await open_upgraded(target)
                except BurrowError as exc:
                    print(f"error: {exc}", file=sys.stderr, flush=True)
                    return
                async with remote:
                    await splice(local, remote, first)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("access.broken error=%s", exc)
        finally:
            log.debug("access.closed hostname=%s", target.hostname)

    await trio.serve_listeners(handle, listeners)


class _Stdio(trio.abc.HalfCloseableStream):
    """stdin/stdout as one half-closeable stream (for SSH ProxyCommand)."""

    def __init__(self) -> None:
        self._in = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        self._out = trio.lowlevel.FdStream(os.dup(sys.stdout.fileno()))

    async def receive_some(self, max_bytes=None) -> bytes:
        return await self._in.receive_some(max_bytes or READ_SIZE)

    async def send_all(self, data) -> None:
        await self._out.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._out.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._out.aclose()

    async def aclose(self) -> None:
        await self._in.aclose()
        await self._out.aclose()


async def serve_stdio(target: Target) -> None:
    """`burrow access ssh`: stdin/stdout ⇄ one upgraded edge connection."""
    remote, first = await open_upgraded(target)
    async with remote:
        stdio = _Stdio()
        async with stdio:
            await splice(stdio, remote, first)
