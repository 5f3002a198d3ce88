"""A trio stream over a plain non-blocking socket: one C call per receive or send.

trio's `SocketStream` goes through its socket wrapper for every call (an async context
manager around the attempt, a helper that retries, a wrapper per method): several Python
layers per receive. `PlainSocketStream` makes the attempt itself and waits for the socket
only when it would block, with the same checkpoints and errors as `SocketStream`.

A receive that follows an answer (a send after a receive that took all there was: a
request passed on, a response written) waits for the socket first: the peer's next bytes
are its reply, which cannot be there yet, and a receive tried first would only fail
(`BlockingIOError`) before waiting all the same.
"""

from __future__ import annotations

import socket

import trio

DEFAULT_RECEIVE_SIZE = 64 * 1024


class PlainSocketStream(trio.abc.HalfCloseableStream):
    """A connected TCP or unix socket (`take` makes one from a trio `SocketStream`)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socket = sock
        self._sending = False
        self._receiving = False
        self._closed = False
        self.eof_sent = False
        self._took_all = False  # the last receive got fewer bytes than it asked for
        self._answered = False  # sent since a receive that took all: wait before the next receive

    @classmethod
    def take(cls, stream: trio.SocketStream) -> PlainSocketStream:
        """Take over `stream`'s socket (its options, TCP_NODELAY among them, stay set)."""
        sock = stream.socket
        return cls(socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach()))

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this socket stream")
        size = DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        self._receiving = True
        try:
            wait_first, self._answered = self._answered, False
            data = await self._retry(trio.lowlevel.wait_readable, self.socket.recv, size, wait_first=wait_first)
            self._took_all = len(data) < size
            return data
        finally:
            self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._start_sending()
        try:
            if self.eof_sent:
                raise trio.ClosedResourceError("this socket stream's sending side is closed")
            with memoryview(data) as whole, whole.cast("B") as view:
                sent = await self._retry(trio.lowlevel.wait_writable, self.socket.send, view)
                while sent < len(view):
                    sent += await self._retry(trio.lowlevel.wait_writable, self.socket.send, view[sent:])
        finally:
            self._sending = False

    def send_nowait(self, data: bytes) -> int:
        """Send what the socket takes now, without waiting and without a checkpoint; return how
        many bytes of `data` went (`send_all` the rest)."""
        self._start_sending()
        try:
            if self.eof_sent:
                raise trio.ClosedResourceError("this socket stream's sending side is closed")
            return self.socket.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(exc) from exc
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        self._start_sending()
        try:
            await trio.lowlevel.wait_writable(self.socket)
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """A FIN; nothing can be sent afterwards (a second call does nothing)."""
        self._start_sending()
        try:
            await trio.lowlevel.checkpoint()
            if not self.eof_sent:
                self.eof_sent = True
                self.socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise trio.BrokenResourceError(exc) from exc
        finally:
            self._sending = False

    def _start_sending(self) -> None:
        """Claim the sending side (one task at a time, as trio's streams)."""
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this socket stream")
        if self._closed:
            raise trio.ClosedResourceError("this socket stream is closed")
        self._sending = True
        self._answered = self._took_all

    async def aclose(self) -> None:
        self.close_forcefully()
        await trio.lowlevel.checkpoint()

    def close_forcefully(self) -> None:
        """Close the socket now; tasks waiting on it get ClosedResourceError."""
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()

    async def _retry(self, wait, operation, *args, wait_first: bool = False):
        """`operation(*args)`, waiting with `wait` while the socket would block (and before
        the first attempt, with `wait_first`); a checkpoint as trio's socket calls are (one
        that waited has let others run already)."""
        if self._closed:
            raise trio.ClosedResourceError("this socket stream is closed")
        if wait_first:
            await wait(self.socket)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        waited = wait_first
        while True:
            try:
                result = operation(*args)
            except BlockingIOError:
                await wait(self.socket)
                waited = True
            except OSError as exc:
                if self._closed:
                    raise trio.ClosedResourceError("this socket stream was closed") from exc
                raise trio.BrokenResourceError(exc) from exc
            else:
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return result
