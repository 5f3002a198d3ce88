"""A bounded HTTP/1.1 keep-alive load client (trio + h11), plain or over TLS.

`run_load` opens N connections first, then starts the clock and lets N workers
take requests from a shared budget until it is spent or the time cap passes.
A connection the server closes (or breaks) is reopened; each failure uses up one
request of the budget, so the loop always ends.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field

import h11
import trio

READ_SIZE = 64 * 1024
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Target:
    """Where to send requests: the TCP address, and what goes into TLS SNI and Host."""

    host: str
    port: int
    path: str
    server_name: str
    tls: ssl.SSLContext | None = None
    local_address: str | None = None  # the client's source address, e.g. 127.0.0.2


@dataclass
class LoadResult:
    """What one load run measured."""

    completed: int = 0
    errors: int = 0
    elapsed: float = 0.0
    timed_out: bool = False
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return self.completed / self.elapsed if self.elapsed else 0.0

    def percentile(self, fraction: float) -> float:
        """Latency in seconds at `fraction` (0..1) of the sorted successful requests."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class ClientConnection:
    """One keep-alive client connection."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, target: Target) -> ClientConnection:
        """Connect (and do the TLS handshake) within CONNECT_TIMEOUT."""
        with trio.fail_after(CONNECT_TIMEOUT):
            stream: trio.abc.Stream = await trio.open_tcp_stream(target.host, target.port, local_address=target.local_address)
            if target.tls is not None:
                stream = trio.SSLStream(stream, target.tls, server_hostname=target.server_name)
                await stream.do_handshake()
        return cls(stream)

    async def get(self, target: Target) -> tuple[int, bool]:
        """Send one GET and read the whole response; return (status, reusable)."""
        request = h11.Request(method="GET", target=target.path, headers=[("Host", target.server_name)])
        await self.stream.send_all(self.h11.send(request) + self.h11.send(h11.EndOfMessage()))
        status = 0
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(READ_SIZE))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise trio.BrokenResourceError("server closed the connection mid-response")
        reusable = self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE
        if reusable:
            self.h11.start_next_cycle()
        return status, reusable

    async def close(self) -> None:
        await trio.aclose_forcefully(self.stream)


class Budget:
    """A shared count of requests still to send."""

    def __init__(self, requests: int) -> None:
        self.left = requests

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


FAILURES = (OSError, ssl.SSLError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, h11.ProtocolError)


async def _worker(target: Target, conn: ClientConnection | None, budget: Budget, result: LoadResult) -> None:
    """Send requests on one connection (reopened when needed) while the budget lasts."""
    try:
        while budget.take():
            started = time.perf_counter()
            try:
                conn = conn or await ClientConnection.open(target)
                status, reusable = await conn.get(target)
            except FAILURES:
                result.errors += 1
                reusable = False
            else:
                if status == 200:
                    result.completed += 1
                    result.latencies.append(time.perf_counter() - started)
                else:
                    result.errors += 1
            if not reusable and conn is not None:
                await conn.close()
                conn = None
    finally:
        if conn is not None:
            await conn.close()


async def _open_all(target: Target, count: int) -> list[ClientConnection | None]:
    """Open `count` connections concurrently; a failed one is None (its worker retries)."""
    conns: list[ClientConnection | None] = [None] * count

    async def open_one(index: int) -> None:
        try:
            conns[index] = await ClientConnection.open(target)
        except FAILURES:
            conns[index] = None

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(open_one, index)
    return conns


async def run_load(target: Target, *, requests: int, connections: int, time_cap: float) -> LoadResult:
    """Send `requests` GETs over `connections` keep-alive connections, within `time_cap` seconds."""
    result = LoadResult()
    conns = await _open_all(target, connections)
    budget = Budget(requests)
    started = time.perf_counter()
    with trio.move_on_after(time_cap) as scope:
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(_worker, target, conn, budget, result)
    result.elapsed = time.perf_counter() - started
    result.timed_out = scope.cancelled_caught
    return result
