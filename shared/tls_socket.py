"""TLS streams over non-blocking `ssl.SSLSocket`s: OpenSSL reads and writes the socket itself.

`trio.SSLStream` drives an `SSLObject` through memory BIOs: each record is copied from the
kernel into a MemoryBIO and out again, under its own locks and retry loop, all in Python.
Here a receive or a send is one C call (plus the checkpoint every trio I/O call makes), and
a receive takes every full record already on the socket, up to `max_bytes`, in that step.

`TLSSocketStream` is what `trio.SSLStream` is where Burrow uses it (`do_handshake`,
`receive_some`, `send_all`, `aclose`, `selected_alpn_protocol`, `getpeercert`), and it
half-closes: `send_eof` sends a TCP FIN under TLS (see shared/half_close.py for why that is
read as EOF). TLS renegotiation is refused (`OP_NO_RENEGOTIATION`), so reading never has to
write and writing never has to read.

A receive that follows an answer (a send after a receive that took all there was) waits
for the socket first, unless OpenSSL holds plaintext already: the peer's reply cannot be
there yet, and a read tried first would only raise `SSLWantReadError` (≈ 4 µs) before
waiting all the same.
"""

from __future__ import annotations

import socket
import ssl

import trio

TLS_RECORD = 16 * 1024  # the most plaintext one TLS record carries
DEFAULT_RECEIVE_SIZE = 64 * 1024


class TLSSocketStream(trio.abc.HalfCloseableStream):
    """A TLS connection on a non-blocking `ssl.SSLSocket` (`wrap` makes one from a trio socket)."""

    def __init__(self, tls: ssl.SSLSocket) -> None:
        tls.setblocking(False)
        self.ssl_object = tls
        self._sending = False
        self._receiving = False
        self._closed = False
        self.eof_sent = False
        self._write_cut = False
        self._took_all = False  # the last receive got fewer bytes than it asked for
        self._answered = False  # sent since a receive that took all: wait before the next receive

    @classmethod
    def wrap(
        cls,
        sock: trio.socket.SocketType,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> TLSSocketStream:
        """Take over `sock` (a connected trio socket, TCP_NODELAY already set as trio's
        `SocketStream` sets it) as the TLS stream's socket.
        A server reads a peer's EOF without close_notify as EOF, as HTTPS servers do
        (`trio.SSLStream`'s `https_compatible`); a client calls it a broken connection."""
        plain = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        context.options |= ssl.OP_NO_RENEGOTIATION
        try:
            tls = context.wrap_socket(
                plain, server_side=server_side, server_hostname=server_hostname,
                do_handshake_on_connect=False, suppress_ragged_eofs=server_side,
            )
        except BaseException:
            plain.close()
            raise
        return cls(tls)

    @property
    def socket(self) -> ssl.SSLSocket:
        return self.ssl_object

    async def do_handshake(self) -> None:
        await self._retry(self.ssl_object.do_handshake)

    def selected_alpn_protocol(self) -> str | None:
        return self.ssl_object.selected_alpn_protocol()

    def getpeercert(self, binary_form: bool = False):
        return self.ssl_object.getpeercert(binary_form)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this TLS stream")
        self._receiving = True
        try:
            size = DEFAULT_RECEIVE_SIZE if max_bytes is None else max_bytes
            if size < 1:
                raise ValueError("max_bytes must be >= 1")
            wait_first = self._answered and not self.ssl_object.pending()
            self._answered = False
            data = await self._retry(self.ssl_object.recv, min(size, TLS_RECORD), wait_first=wait_first)
            if len(data) < TLS_RECORD or size <= TLS_RECORD:
                self._took_all = len(data) < size
                return data
            data = self._more_records(data, size)
            self._took_all = len(data) < size
            return data
        finally:
            self._receiving = False

    def _more_records(self, first: bytes, size: int) -> bytes:
        """`first`, a full record, and the records after it that can be read without waiting.
        One record at a time: CPython allocates the whole size asked for before reading."""
        chunks = [first]
        taken = len(first)
        recv = self.ssl_object.recv
        while taken < size:
            try:
                chunk = recv(min(TLS_RECORD, size - taken))
            except (ssl.SSLError, OSError):  # nothing more yet, or an error the next receive meets
                break
            if not chunk:
                break
            chunks.append(chunk)
            taken += len(chunk)
            if len(chunk) < TLS_RECORD:
                break
        return b"".join(chunks)

    def send_nowait(self, data: bytes) -> int:
        """Send what the socket takes now, without waiting and without a checkpoint; return how
        many bytes of `data` went (fewer than all: `send_all` the rest, which OpenSSL wants
        retried as they are)."""
        self._check_sendable()
        self._answered = self._took_all
        tls = self.ssl_object
        sent = 0
        try:
            with memoryview(data) as view:
                while sent < len(view):
                    sent += tls.send(view[sent:])
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            pass
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise self._broken(exc) from exc
        return sent

    def _check_sendable(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this TLS stream")
        if self._closed:
            raise trio.ClosedResourceError("this TLS stream is closed")
        if self.eof_sent:
            raise trio.ClosedResourceError("this TLS stream's sending side is closed")
        if self._write_cut:
            raise trio.BrokenResourceError("an earlier send on this TLS stream was cancelled midway")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_sendable()
        self._answered = self._took_all
        self._sending = True
        tls = self.ssl_object
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            waited = False
            with memoryview(data) as whole, whole.cast("B") as view:
                sent = 0
                while sent < len(view):
                    try:
                        sent += tls.send(view[sent:])  # after a Want*Error: the same bytes again, as OpenSSL asks
                    except ssl.SSLWantWriteError:
                        await self._wait(trio.lowlevel.wait_writable)
                        waited = True
                    except ssl.SSLWantReadError:
                        await self._wait(trio.lowlevel.wait_readable)
                        waited = True
                    except (ssl.SSLError, OSError, ValueError) as exc:
                        raise self._broken(exc) from exc
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def _wait(self, wait) -> None:
        """Wait for the socket mid-write; a cancellation here leaves a record half-written,
        so the stream can send nothing more."""
        try:
            await wait(self.ssl_object)
        except BaseException:
            self._write_cut = True
            raise

    async def wait_send_all_might_not_block(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this TLS stream is closed")
        await trio.lowlevel.wait_writable(self.ssl_object)

    async def send_eof(self) -> None:
        """A TCP FIN under TLS; nothing can be sent afterwards, and closing skips close_notify."""
        if self._closed:
            raise trio.ClosedResourceError("this TLS stream is closed")
        await trio.lowlevel.checkpoint()
        if not self.eof_sent:
            self.eof_sent = True
            try:
                socket.socket.shutdown(self.ssl_object, socket.SHUT_WR)  # SSLSocket.shutdown drops the TLS state
            except OSError as exc:
                raise trio.BrokenResourceError(exc) from exc

    async def aclose(self) -> None:
        """Send close_notify if the socket takes it at once (never waits for the peer's), then close."""
        if not self._closed and not self.eof_sent:
            try:
                self.ssl_object.unwrap()
            except (ValueError, ssl.SSLError, OSError):  # not connected, the peer's reply not there yet, gone
                pass
        self.close_forcefully()
        await trio.lowlevel.checkpoint()

    def close_forcefully(self) -> None:
        """Close the socket now, without close_notify; tasks waiting on it get ClosedResourceError."""
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.ssl_object)
            self.ssl_object.close()

    async def _retry(self, operation, *args, wait_first: bool = False):
        """`operation(*args)` on the non-blocking socket, waiting while OpenSSL wants to read or
        write (and for the socket to be readable first, with `wait_first`); a checkpoint as
        trio's socket calls are (one that waited has let others run already). SSL and socket
        errors break the stream."""
        if self._closed:
            raise trio.ClosedResourceError("this TLS stream is closed")
        tls = self.ssl_object
        if wait_first:
            await trio.lowlevel.wait_readable(tls)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        waited = wait_first
        while True:
            try:
                result = operation(*args)
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(tls)
                waited = True
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(tls)
                waited = True
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise self._broken(exc) from exc
            else:
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return result

    def _broken(self, exc: BaseException) -> trio.BrokenResourceError | trio.ClosedResourceError:
        if self._closed:
            return trio.ClosedResourceError("this TLS stream was closed")
        return trio.BrokenResourceError(exc)


class TLSSocketListener(trio.abc.Listener[TLSSocketStream]):
    """Accepts TCP connections from `transport_listener` and wraps each in server-side TLS
    (the handshake is the handler's `do_handshake`, so its time limit is the handler's)."""

    def __init__(self, transport_listener: trio.SocketListener, context: ssl.SSLContext) -> None:
        self.transport_listener = transport_listener
        self.context = context

    async def accept(self) -> TLSSocketStream:
        while True:
            stream = await self.transport_listener.accept()
            try:
                return TLSSocketStream.wrap(stream.socket, self.context, server_side=True)
            except OSError:  # gone already: accept the next one (trio.serve_listeners would stop)
                continue

    async def aclose(self) -> None:
        await self.transport_listener.aclose()


async def open_tls_over_tcp(
    host: str, port: int, context: ssl.SSLContext, *, server_hostname: str | None = None
) -> TLSSocketStream:
    """A TCP connection to host:port with TLS over it (the handshake is the caller's)."""
    tcp = await trio.open_tcp_stream(host, port)
    return TLSSocketStream.wrap(tcp.socket, context, server_hostname=server_hostname or host)
