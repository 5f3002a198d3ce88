"""Forwarding between workers: a visitor request that lands on a worker without a session of
its tunnel goes, over a local unix socket, to a worker that holds one.

A peer connection is one tunnel session (`shared.protocol`) per (worker, tunnel): the
forwarding worker plays the edge, the holding worker the connector, and that one passes
each stream on to a session of its own. The connection opens with a hello naming the
tunnel (`hello` / `HelloReader`, sans-IO); the holder answers `ok` only while it holds one.
Which worker holds which tunnels comes from the supervisor (`update`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import trio

from edge.routing.proxy import replayable
from edge.routing.router import Router
from edge.routing.stream_exchange import serve_forwarded
from shared import protocol
from shared.errors import BurrowError, ProtocolError, TunnelUnavailable
from shared.events import RequestHead
from shared.transport import TunnelConnection
from shared.tunnel_stream import StreamRefused, TunnelStream

log = logging.getLogger(__name__)

HELLO = b"burrow-peer/1 "
MAX_HELLO = 256
HELLO_TIMEOUT = 5.0
ACCEPTED, REFUSED = b"ok\n", b"no\n"


def socket_path(directory: Path, index: int) -> Path:
    return directory / f"worker-{index}.sock"


def hello(tunnel_id: str) -> bytes:
    return HELLO + tunnel_id.encode() + b"\n"


class HelloReader:
    """Bytes in; the tunnel id named by the hello (and the bytes after it) once complete."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[str | None, bytes]:
        self._buffer += data
        line, found, rest = self._buffer.partition(b"\n")
        if not found:
            if len(self._buffer) > MAX_HELLO:
                raise ProtocolError("peer hello too long")
            return None, b""
        if not line.startswith(HELLO) or not line[len(HELLO):].isascii():
            raise ProtocolError("not a peer hello")
        return line[len(HELLO):].decode(), rest


class Peers:
    """This worker's side of forwarding: it serves peers on its own socket and dials theirs."""

    def __init__(self, index: int, directory: Path, on_forward: Callable[[], None] = lambda: None) -> None:
        self.index = index
        self.directory = directory
        self.on_forward = on_forward  # counts requests sent to another worker (metrics)
        self.held: dict[int, frozenset[str]] = {}  # other worker → tunnels it holds sessions of
        self._connections: dict[tuple[int, str], TunnelConnection] = {}
        self._dialing: dict[tuple[int, str], trio.Lock] = {}
        self._nursery: trio.Nursery | None = None
        self._router: Router | None = None

    def update(self, held: dict[int, frozenset[str]]) -> None:
        """The supervisor's latest view of which worker holds which tunnels."""
        self.held = {worker: tunnels for worker, tunnels in held.items() if worker != self.index}

    def spread(self, router: Router, tunnel_id: str) -> bool:
        """Whether to take a new session of the tunnel here: not while this worker holds one and
        another worker holds none (the connector, told to retry, reconnects and is hashed anew,
        so its HA sessions end up in every worker and requests are seldom forwarded)."""
        return not router.count(tunnel_id) or all(tunnel_id in tunnels for tunnels in self.held.values())

    async def serve(self, router: Router, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen for peers until cancelled; also the home of the connections this worker dials."""
        self._router = router
        path = socket_path(self.directory, self.index)
        path.unlink(missing_ok=True)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(os.fspath(path))
        sock.listen(1024)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(trio.serve_listeners, self._handle, [trio.SocketListener(sock)])
            task_status.started()

    # Forwarding side ---------------------------------------------------------------

    async def forward(self, exchange, tunnel_id: str, head: RequestHead, send) -> None:
        """`send` the exchange to a worker holding a session of the tunnel (TunnelUnavailable if none)."""
        tried: tuple[int, ...] = ()
        while True:
            holders = [worker for worker, tunnels in sorted(self.held.items()) if tunnel_id in tunnels and worker not in tried]
            if not holders:
                raise TunnelUnavailable(f"tunnel {tunnel_id} has no connector")
            worker = holders[0]
            connection = await self._connection(worker, tunnel_id)
            if connection is None:
                tried += (worker,)
                continue
            self.on_forward()
            try:
                await send(exchange, connection, head)
                return
            except StreamRefused:
                if not replayable(head) or exchange.response_started:
                    raise
                tried += (worker,)

    async def _connection(self, worker: int, tunnel_id: str) -> TunnelConnection | None:
        key = (worker, tunnel_id)
        async with self._dialing.setdefault(key, trio.Lock()):
            connection = self._connections.get(key)
            if connection is not None and connection.accepting:
                return connection
            try:
                connection = await self._dial(worker, tunnel_id)
            except (OSError, trio.TooSlowError, BurrowError) as exc:
                log.info("peer.unreachable worker=%d tunnel=%s error=%s", worker, tunnel_id, exc)
                return None
            if connection is not None:
                self._connections[key] = connection
                self._nursery.start_soon(self._run, key, connection)
            return connection

    async def _dial(self, worker: int, tunnel_id: str) -> TunnelConnection | None:
        with trio.fail_after(HELLO_TIMEOUT):
            stream = await trio.open_unix_socket(os.fspath(socket_path(self.directory, worker)))
            try:
                await stream.send_all(hello(tunnel_id))
                answer = b""
                while len(answer) < len(ACCEPTED):
                    data = await stream.receive_some(len(ACCEPTED) - len(answer))
                    if not data:
                        break
                    answer += data
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        if answer != ACCEPTED:
            await trio.aclose_forcefully(stream)
            return None
        return TunnelConnection(stream, protocol.TunnelSession("edge"))

    async def _run(self, key: tuple[int, str], connection: TunnelConnection) -> None:
        try:
            await connection.serve()
        except BurrowError as exc:
            log.debug("peer.closed worker=%d tunnel=%s error=%s", *key, exc)
        finally:
            if self._connections.get(key) is connection:
                del self._connections[key]

    # Holding side ---------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        reader = HelloReader()
        try:
            with trio.fail_after(HELLO_TIMEOUT):
                tunnel_id, rest = None, b""
                while tunnel_id is None:
                    data = await stream.receive_some(MAX_HELLO)
                    if not data:
                        raise ProtocolError("peer left before its hello")
                    tunnel_id, rest = reader.feed(data)
            if not self._router.count(tunnel_id):
                await stream.send_all(REFUSED)
                await trio.aclose_forcefully(stream)
                return
            await stream.send_all(ACCEPTED)
        except (trio.BrokenResourceError, trio.TooSlowError, ProtocolError) as exc:
            log.info("peer.refused error=%s", exc or type(exc).__name__)
            await trio.aclose_forcefully(stream)
            return
        connection = TunnelConnection(stream, protocol.TunnelSession("connector"), initial_data=rest)
        try:
            await connection.serve(lambda peer_stream: self._serve_stream(peer_stream, tunnel_id))
        except BurrowError as exc:
            log.debug("peer.lost tunnel=%s error=%s", tunnel_id, exc)

    async def _serve_stream(self, stream: TunnelStream, tunnel_id: str) -> None:
        """One forwarded request, passed on to a session of this worker (answers as the proxy would)."""
        await serve_forwarded(stream, self._router, tunnel_id)
