"""A TCP proxy between connector and edge that injects faults, for a bounded chaos run.

    python -m tests.e2e.faultproxy PORT_FILE TARGET_PORT SEED CHAOS_SECONDS

It forwards every connection to 127.0.0.1:TARGET_PORT. For the first
CHAOS_SECONDS it picks a random open connection every 1.5–3 s and either
resets it (RST both ways), stalls it briefly (0.5 s: a session must survive),
stalls it for longer than any test heartbeat (4 s: both sides must notice), or
adds 200 ms of latency to every chunk on every connection for 3 s (a latency
spike on the uplink).
Afterwards it only forwards. Each fault is printed as `fault kind=… conn=…`.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys

import trio

READ_SIZE = 64 * 1024
WARM_UP = 2.0
STALLS = {"stall_short": 0.5, "stall_long": 4.0}
LATENCY, LATENCY_SECONDS = 0.2, 3.0


class Pipe:
    def __init__(self, number: int, client: trio.SocketStream, upstream: trio.SocketStream) -> None:
        self.number = number
        self.client = client
        self.upstream = upstream
        self.scope = trio.CancelScope()
        self.stalled_until = 0.0
        self.slow_until = 0.0

    async def pump(self, source: trio.SocketStream, sink: trio.SocketStream) -> None:
        try:
            while data := await source.receive_some(READ_SIZE):
                if trio.current_time() < self.stalled_until:
                    await trio.sleep_until(self.stalled_until)
                if trio.current_time() < self.slow_until:
                    await trio.sleep(LATENCY)
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.scope.cancel()  # one side ended: end both, abruptly

    def reset(self) -> None:
        for stream in (self.client, self.upstream):
            try:
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.scope.cancel()


async def main(port_file: str, target_port: int, seed: int, chaos_seconds: float) -> None:
    rng = random.Random(seed)
    pipes: dict[int, Pipe] = {}
    counter = 0

    async def handle(client: trio.SocketStream) -> None:
        nonlocal counter
        counter += 1
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", target_port)
        except OSError:
            await trio.aclose_forcefully(client)
            return
        pipe = pipes[counter] = Pipe(counter, client, upstream)
        try:
            with pipe.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pipe.pump, client, upstream)
                    nursery.start_soon(pipe.pump, upstream, client)
        finally:
            pipes.pop(pipe.number, None)
            await trio.aclose_forcefully(client)
            await trio.aclose_forcefully(upstream)

    async def chaos() -> None:
        end = trio.current_time() + chaos_seconds
        await trio.sleep(WARM_UP)
        while trio.current_time() < end:
            await trio.sleep(rng.uniform(1.5, 3.0))
            if not pipes:
                continue
            pipe = pipes[rng.choice(sorted(pipes))]
            kind = rng.choice(["reset", "stall_short", "stall_long", "latency"])
            if kind == "reset":
                pipe.reset()
            elif kind == "latency":  # the whole uplink: every connection
                for each in pipes.values():
                    each.slow_until = trio.current_time() + LATENCY_SECONDS
            else:
                pipe.stalled_until = trio.current_time() + STALLS[kind]
            print(f"fault kind={kind} conn={pipe.number} at={trio.current_time():.2f}", flush=True)
        print("chaos.over", flush=True)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    with open(port_file + ".tmp", "w") as out:
        out.write(str(listeners[0].socket.getsockname()[1]))
    os.replace(port_file + ".tmp", port_file)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(chaos)
        await trio.serve_listeners(handle, listeners)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
