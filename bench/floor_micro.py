"""The floor of Burrow's design in Python + trio: what small HTTP/1.1 requests cost through
two trio processes that do only what any edge + connector of this shape must do.

The floor edge terminates visitor TLS and multiplexes every visitor connection over one
TLS connection to the floor connector, which relays each request to the origin over a
kept-alive plain connection; both sides use Burrow's own fastest pieces
(`shared.tls_socket`, `shared.socket_stream`, `shared.aio.Signal`) and its writer design
(one writer task per tunnel connection, frames batched per scheduling round). Nothing else:
no HTTP parsing (a request or a response is assumed to arrive in one read, true of
h2load's GETs and the 64-byte /small), no routing, flow control, limits, timeouts, logs
or metrics, and no task per request. So it is cheaper than any complete tunnel of this
shape could be, Burrow included.

It runs beside nginx-tls and Burrow in the same run (same origin, same pinning as
bench/run: servers on core 0, h2load on core 1), in alternating rounds, and prints req/s,
the ratio to nginx-tls and the CPU per request of the two tunnel processes.

    .venv/bin/python bench/floor_micro.py [--rounds 3] [--seconds 5] [--before DIR]

--before DIR also runs the Burrow code in DIR (`git archive REV | tar -x -C DIR`, plus its
compiled cores) as "burrow-before", for a change's before/after in one run. --h2 measures
small GETs over HTTP/2 instead (h2load -c 10 -m 10, as bench/run), without the floor.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import figures
from peers import HOST, Front, Peers, free_port, port_open
from tunnel_bench import BenchError, start, wait_until

FRAME = struct.Struct("!II")  # stream id, payload length
READ_SIZE = 256 * 1024
H2_RATE = 2000  # req/s a Burrow's HTTP/2 run is sized for (Burrow's h2 run is a request count, see figures.small_get_h2)


# ---------------------------------------------------------------- the floor's two processes


def serve(role: str, port: int, tunnel_port: int, origin_port: int, certs: Path) -> None:
    import trio

    from shared.aio import Signal
    from shared.socket_stream import PlainSocketStream
    from shared.tls_socket import TLSSocketListener, open_tls_over_tcp

    class Slot:
        """A stream's inbox: frames in arrival order."""

        def __init__(self) -> None:
            self.items: list[bytes] = []
            self.signal = Signal()

        def put(self, item: bytes) -> None:
            self.items.append(item)
            self.signal.fire()

        async def get(self) -> bytes:
            while not self.items:
                await self.signal.wait()
            return self.items.pop(0)

    class Mux:
        """One end of the floor tunnel: frames out through one batching writer, in through one reader."""

        def __init__(self, transport) -> None:
            self.transport = transport
            self.outbox: list[bytes] = []
            self.filled = Signal()
            self.slots: dict[int, Slot] = {}

        def send(self, stream_id: int, data: bytes) -> None:
            self.outbox.append(FRAME.pack(stream_id, len(data)) + data)
            self.filled.fire()

        async def writer(self) -> None:
            while True:
                if not self.outbox:
                    await self.filled.wait()
                    await trio.lowlevel.checkpoint()  # the others woken this round add theirs
                    continue
                data = b"".join(self.outbox)
                self.outbox.clear()
                await self.transport.send_all(data)

        async def reader(self, on_frame) -> None:
            buffer = b""
            while data := await self.transport.receive_some(READ_SIZE):
                buffer += data
                while len(buffer) >= FRAME.size:
                    stream_id, length = FRAME.unpack_from(buffer)
                    if len(buffer) < FRAME.size + length:
                        break
                    on_frame(stream_id, buffer[FRAME.size:FRAME.size + length])
                    buffer = buffer[FRAME.size + length:]

    async def edge() -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certs / "floor.pem", certs / "floor.key")
        context.set_alpn_protocols(["http/1.1"])
        tunnels = TLSSocketListener((await trio.open_tcp_listeners(tunnel_port, host="127.0.0.1"))[0], context)
        while True:  # the first connection to complete a handshake (not a port probe) is the connector
            tunnel = await tunnels.accept()
            try:
                await tunnel.do_handshake()
                break
            except trio.BrokenResourceError:
                tunnel.close_forcefully()
        mux = Mux(tunnel)
        ids = itertools.count(1)

        async def visitor(stream) -> None:
            slot = mux.slots[stream_id := next(ids)] = Slot()
            try:
                await stream.do_handshake()
                while request := await stream.receive_some(READ_SIZE):
                    mux.send(stream_id, request)
                    await stream.send_all(await slot.get())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # a port probe, or a visitor gone
            finally:
                del mux.slots[stream_id]
                stream.close_forcefully()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(mux.writer)
            nursery.start_soon(mux.reader, lambda stream_id, data: mux.slots[stream_id].put(data))
            visitors = TLSSocketListener((await trio.open_tcp_listeners(port, host="127.0.0.1"))[0], context)
            nursery.start_soon(trio.serve_listeners, visitor, [visitors])

    async def connector() -> None:
        context = ssl.create_default_context(cafile=certs / "floor-ca.pem")
        tunnel = await open_tls_over_tcp("127.0.0.1", tunnel_port, context, server_hostname=HOST)
        await tunnel.do_handshake()
        mux = Mux(tunnel)

        async def relay(stream_id: int, slot: Slot) -> None:
            origin = PlainSocketStream.take(await trio.open_tcp_stream("127.0.0.1", origin_port))
            while True:
                await origin.send_all(await slot.get())
                mux.send(stream_id, await origin.receive_some(READ_SIZE))

        async with trio.open_nursery() as nursery:
            def on_frame(stream_id: int, data: bytes) -> None:
                if (slot := mux.slots.get(stream_id)) is None:
                    slot = mux.slots[stream_id] = Slot()
                    nursery.start_soon(relay, stream_id, slot)
                slot.put(data)

            nursery.start_soon(mux.writer)
            nursery.start_soon(mux.reader, on_frame)

    trio.run(edge if role == "edge" else connector)


# ---------------------------------------------------------------- the comparison


def start_floor(stack: contextlib.ExitStack, tmp: Path, peers: Peers) -> Front:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(HOST)
    cert.private_key_pem.write_to_path(str(tmp / "floor.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp / "floor.pem"))
    ca.cert_pem.write_to_path(str(tmp / "floor-ca.pem"))
    port, tunnel_port = free_port(), free_port()
    procs = {}
    for role in ("edge", "connector"):
        cmd = [sys.executable, __file__, "--serve", role, "--port", str(port), "--tunnel-port", str(tunnel_port),
               "--origin-port", str(peers.origin_port), "--certs", str(tmp)]
        procs[role] = start(stack, cmd, tmp / f"floor-{role}.log", peers.env)
        if role == "edge":
            wait_until(lambda: port_open(tunnel_port), "floor edge", procs[role], tmp / "floor-edge.log")
    wait_until(lambda: port_open(port), "floor edge's visitor port", procs["edge"], tmp / "floor-edge.log")
    return Front("floor", port, ca_file=tmp / "floor-ca.pem", watched={"front": procs["edge"].pid, "back": procs["connector"].pid})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="each h2load run (≤ 10)")
    parser.add_argument("--before", type=Path, help="also measure the Burrow code in this directory (PYTHONPATH)")
    parser.add_argument("--h2", action="store_true", help="HTTP/2 (10 connections × 10 streams) instead; no floor (it speaks only HTTP/1.1)")
    parser.add_argument("--serve", choices=("edge", "connector"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tunnel-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--origin-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--certs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.tunnel_port, args.origin_port, args.certs)
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.before and not (args.before / "shared" / "transport.py").is_file():
        parser.error(f"--before {args.before}: no Burrow source there (shared/transport.py)")
    seconds = max(1, min(args.seconds, 10))
    os.sched_setaffinity(0, {0})  # every server started from here on core 0, like bench/run
    env = {k: v for k, v in os.environ.items() if (not k.startswith("BURROW") or k == "BURROW_PURE_PYTHON") and k != "PYTHONPATH"}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="burrow-floor-")))
        peers = Peers(stack, tmp, env, 1)
        try:
            peers.start_nginx()
            for name, tree in (("burrow", None), ("burrow-before", args.before)):
                if name == "burrow" or tree:
                    (work := tmp / name).mkdir()
                    peers.env = {**env, "PYTHONPATH": str(tree.resolve())} if tree else env
                    peers.start_burrow(stack, work, name)
            peers.env = env
            if not args.h2:
                peers.fronts["floor"] = start_floor(stack, tmp, peers)
        except BenchError as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 1
        params = figures.Params(seconds, 1, 0, 10.0, ("taskset", "-c", "1"), tmp / "unused")
        names = ("nginx-tls", "burrow", *(["burrow-before"] if args.before else []), *([] if args.h2 else ["floor"]))
        rates: dict[str, list[float]] = {name: [] for name in names}
        cpu_us: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:
                front = peers.fronts[name]
                pids = list(front.watched.values())
                before = figures.cpu_seconds(pids)
                rate, note = figures.small_get_h2(front, params, H2_RATE) if args.h2 else figures.small_get_h1(front, params)
                if not rate or note:
                    print(f"{name}: {note or 'no answers'}", file=sys.stderr)
                    for log in sorted([*tmp.glob(f"{name}-*.log"), *(tmp / name).glob("*.log")]):  # floor's, a Burrow's
                        print(f"{log.name}:\n{log.read_text()[-2000:]}", file=sys.stderr)
                    return 1
                rates[name].append(rate)
                if pids:
                    requests = figures.h2_request_count(front, params, H2_RATE) if args.h2 else rate * seconds
                    cpu_us[name].append((figures.cpu_seconds(pids) - before) * 1e6 / requests)
        reference = statistics.median(rates["nginx-tls"])
        load = "h2, 10 connections × 10 streams" if args.h2 else "h1, 50 connections"
        print(f"small GET {load}, {seconds} s × {args.rounds} rounds (medians; servers on core 0, h2load on core 1)")
        print(f"{'':13} {'req/s':>8} {'× nginx-tls':>12} {'tunnel CPU µs/req':>18}")
        for name in names:
            cpu = f"{statistics.median(cpu_us[name]):.0f}" if cpu_us[name] else "-"
            rate = statistics.median(rates[name])
            print(f"{name:13} {rate:8.0f} {rate / reference:12.3f} {cpu:>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
