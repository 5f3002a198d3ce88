"""Upgraded streams (WebSocket, TCP, SSH): bytes piped between a socket and a tunnel stream."""

from __future__ import annotations

import logging

import trio

from shared.aio import single_errors
from shared.errors import ProtocolError
from shared.tunnel_stream import CLEANUP_TIMEOUT, TunnelStream

log = logging.getLogger(__name__)

UPGRADE_IDLE_TIMEOUT = 3600.0  # an upgraded pipe with no byte either way for this long is closed
RELAY_READ_SIZE = 64 * 1024


async def relay(
    peer: trio.abc.Stream, stream: TunnelStream, first: bytes = b"", idle_timeout: float = UPGRADE_IDLE_TIMEOUT
) -> None:
    """Pipe bytes between `peer` (a socket) and an upgraded tunnel stream until both ends finished.

    EOF from `peer` ends the tunnel stream; the end of the tunnel stream becomes
    `send_eof` when `peer` can half-close, else the pipe closes. `first` are bytes
    already read from `peer`. Memory stays bounded: each direction holds one read.
    """
    with trio.CancelScope(deadline=trio.current_time() + idle_timeout) as idle:

        def touched() -> None:
            idle.deadline = trio.current_time() + idle_timeout

        async def upstream() -> None:
            if first:
                await stream.send(first)
            while True:
                try:
                    data = await peer.receive_some(RELAY_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    await stream.end()
                    return
                touched()
                await stream.send(data)

        async def downstream() -> None:
            while chunk := await stream.receive():
                touched()
                await peer.send_all(chunk)
            if isinstance(peer, trio.abc.HalfCloseableStream):
                with trio.move_on_after(CLEANUP_TIMEOUT):
                    await peer.send_eof()
            else:
                nursery.cancel_scope.cancel()

        try:
            with single_errors():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(upstream)
                    nursery.start_soon(downstream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ProtocolError) as exc:
            log.debug("relay.broken stream=%d error=%s", stream.stream_id, exc)
        if not stream.local_closed and stream._error is None:
            with trio.move_on_after(CLEANUP_TIMEOUT):
                await stream.end()  # the tunnel side sees an orderly end, not a reset
    if idle.cancelled_caught:
        log.info("relay.idle_timeout stream=%d seconds=%g", stream.stream_id, idle_timeout)
