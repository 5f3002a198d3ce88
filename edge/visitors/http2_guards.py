"""Sans-IO defences for the visitor HTTP/2 adapter: no trio, no clock (pass `now` in).

- `Http2Limits`: the SETTINGS, budgets and timers every visitor connection gets.
- `LeakyBucket`: a budget of events that refills at a steady rate.
- `ResetRateGuard` spots the rapid-reset attack (CVE-2023-44487): many streams
  opened and reset by the client within a short window.
- `FrameMeter` follows frame boundaries in the client's byte stream, before h2
  parses anything: it spends a budget per frame type a client can send without
  asking for work (h2 hides most of them: PRIORITY, empty DATA and WINDOW_UPDATE
  on closed streams raise no event), sizes each header block (HEADERS plus its
  CONTINUATION frames; h2 4.4.1 buffers up to 64 CONTINUATION frames of any size,
  `h2.frame_buffer.CONTINUATION_BACKLOG`, about 1 MiB at a 16 KiB frame size) and
  times it: a header block must end `header_block_timeout` after it began, as an
  HTTP/1.1 request head must.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = 0x1
END_HEADERS = 0x4
PADDED = 0x8
KNOWN = CONTINUATION  # frame types above are extensions h2 ignores
ROUNDING = 1e-9  # events: a bucket's level is a float
FRAMES_PER_PIECE = 100  # h2 parses a whole read before its events are seen: pieces of at most this many frames


@dataclass(frozen=True)
class Http2Limits:
    """SETTINGS, defences and timers for visitor connections (DESIGN.md §6; seconds and bytes)."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 64 * 1024
    connection_window_size: int = 1024 * 1024
    max_frame_size: int = 16 * 1024
    max_header_list_size: int = 64 * 1024  # advertised; a larger request gets 431
    max_header_fields: int = 100  # more get 431
    max_header_block: int = 128 * 1024  # encoded or decoded, beyond this: GOAWAY ENHANCE_YOUR_CALM
    max_requests: int = 10_000  # per connection, then a graceful GOAWAY
    rapid_reset_streams: int = 100  # streams opened within the window before resets count
    rapid_reset_window: float = 1.0
    max_reads_during_write: int = 16  # reads handled while one write to the client is stuck
    max_stream_starts: int = 200  # request handlers started per second, at most; later ones wait
    # Frames that ask for no work, per connection: each type's budget refills in full every
    # `frame_budget_window` seconds; past it, GOAWAY ENHANCE_YOUR_CALM.
    max_priority_frames: int = 200
    max_reset_frames: int = 1000
    max_empty_data_frames: int = 100  # no payload (or padding only), no END_STREAM
    max_window_update_frames: int = 200  # plus one per `window_update_credit` body bytes sent
    window_update_credit: int = 1024
    max_settings_frames: int = 100
    max_ping_frames: int = 100
    max_continuation_frames: int = 1000
    max_unknown_frames: int = 100  # extension frame types (h2 ignores them)
    frame_budget_window: float = 10.0
    header_block_timeout: float = 10.0  # HEADERS to END_HEADERS; `--header-timeout`
    preface_timeout: float = 10.0  # preface and first SETTINGS
    idle_timeout: float = 75.0  # no open stream
    body_idle_timeout: float = 60.0
    send_timeout: float = 60.0
    read_size: int = 64 * 1024


class Flood(Exception):
    """A client spent a budget (or sent too large a header block): GOAWAY ENHANCE_YOUR_CALM."""


class LeakyBucket:
    """Up to `size` events at once, `size` more every `window` seconds."""

    def __init__(self, size: int, window: float) -> None:
        self.size = size
        self.rate = size / window
        self._level = 0.0
        self._at = -math.inf

    def _drain(self, now: float) -> None:
        self._level = max(0.0, self._level - (now - self._at) * self.rate)
        self._at = now

    def add(self, now: float) -> bool:
        """Count one event; False when it does not fit."""
        self._drain(now)
        self._level += 1
        return self._level <= self.size + ROUNDING

    def wait(self, now: float) -> float:
        """Seconds until one more event fits (0: now)."""
        self._drain(now)
        excess = self._level + 1 - self.size
        return excess / self.rate if excess > ROUNDING else 0.0

    def credit(self, events: float) -> None:
        """Give back room for `events` (work the client asked for, done)."""
        self._level = max(0.0, self._level - events)


class ResetRateGuard:
    """Counts stream opens and client resets over a sliding window."""

    def __init__(self, min_streams: int, window: float) -> None:
        self.min_streams = min_streams
        self.window = window
        self._opened: deque[float] = deque()
        self._reset: deque[float] = deque()

    def opened(self, now: float) -> None:
        self._opened.append(now)
        self._prune(now)

    def reset(self, now: float) -> bool:
        """Record a client reset; True when the connection should be refused."""
        self._reset.append(now)
        self._prune(now)
        opened = len(self._opened)
        return opened >= self.min_streams and 2 * len(self._reset) > opened

    def _prune(self, now: float) -> None:
        for times in (self._opened, self._reset):
            while times and times[0] <= now - self.window:
                times.popleft()


class FrameMeter:
    """Frame budgets, header block size and header block time, in the raw client byte stream
    (after the preface)."""

    def __init__(self, limits: Http2Limits) -> None:
        self.limits = limits
        window = limits.frame_budget_window
        self._budgets = {
            kind: (LeakyBucket(size, window), name)
            for kind, size, name in (
                (DATA, limits.max_empty_data_frames, "empty DATA"),
                (PRIORITY, limits.max_priority_frames, "PRIORITY"),
                (RST_STREAM, limits.max_reset_frames, "RST_STREAM"),
                (SETTINGS, limits.max_settings_frames, "SETTINGS"),
                (PING, limits.max_ping_frames, "PING"),
                (WINDOW_UPDATE, limits.max_window_update_frames, "WINDOW_UPDATE"),
                (CONTINUATION, limits.max_continuation_frames, "CONTINUATION"),
                (KNOWN + 1, limits.max_unknown_frames, "unknown-type"),
            )
        }
        self._skip = len(PREFACE)  # bytes still to pass over: the preface, then each frame's payload
        self._header = bytearray()
        self._padded_data = 0  # the length of a padded DATA frame whose pad length byte is next
        self._block: int | None = None  # bytes in the header block being received
        self._ends_block = False  # the payload being skipped ends the header block
        self._since = math.inf  # when the frame header or header block under way began
        self._data_sent = 0

    @property
    def deadline(self) -> float:
        """When the frame header or header block under way must have ended (inf: none is)."""
        return self._since + self.limits.header_block_timeout

    def feed(self, data: bytes, now: float, data_sent: int) -> list[bytes]:
        """Account for `data` (`data_sent`: body bytes the edge sent so far); raise `Flood`.
        Returns `data` cut at frame boundaries into pieces of at most FRAMES_PER_PIECE frames."""
        self._budgets[WINDOW_UPDATE][0].credit((data_sent - self._data_sent) / self.limits.window_update_credit)
        self._data_sent = data_sent
        position, size = 0, len(data)
        pieces, piece_start, frames = [], 0, 0
        while position < size:
            if self._padded_data:  # DATA of padding only counts as empty
                if data[position] + 1 == self._padded_data:
                    self._spend(DATA, now)
                self._padded_data = 0
            if self._skip:
                step = min(self._skip, size - position)
                self._skip -= step
                position += step
                if not self._skip and self._ends_block:
                    self._ends_block, self._since = False, math.inf
                continue
            if not self._header and self._block is None:
                self._since = now
            take = min(FRAME_HEADER - len(self._header), size - position)
            self._header += data[position : position + take]
            position += take
            if len(self._header) == FRAME_HEADER:
                self._frame(int.from_bytes(self._header[:3], "big"), self._header[3], self._header[4], now)
                self._header.clear()
                frames += 1
                if frames == FRAMES_PER_PIECE:  # cut before the next frame
                    end = min(position + self._skip, size)
                    pieces.append(data[piece_start:end])
                    piece_start, frames = end, 0
        if piece_start < size:
            pieces.append(data[piece_start:])
        return pieces

    def _frame(self, length: int, kind: int, flags: int, now: float) -> None:
        self._skip = length
        if kind == DATA:
            if length == 0 and not flags & END_STREAM:
                self._spend(DATA, now)
            elif flags & PADDED and not flags & END_STREAM:
                self._padded_data = length
        elif kind in (HEADERS, CONTINUATION):
            self._header_block(length, kind, flags, now)
        elif min(kind, KNOWN + 1) in self._budgets:  # not GOAWAY or PUSH_PROMISE: h2 ends the connection
            self._spend(min(kind, KNOWN + 1), now)
        if self._block is None and not self._ends_block:
            self._since = math.inf

    def _header_block(self, length: int, kind: int, flags: int, now: float) -> None:
        if kind == CONTINUATION:
            self._spend(CONTINUATION, now)
            if self._block is None:
                return  # h2 refuses it
        self._block = length + (self._block or 0)
        if self._block > self.limits.max_header_block:
            raise Flood(f"header block over {self.limits.max_header_block} bytes")
        if flags & END_HEADERS:
            self._block = None
            self._ends_block = length > 0

    def _spend(self, kind: int, now: float) -> None:
        budget, name = self._budgets[kind]
        if not budget.add(now):
            raise Flood(f"{name} frames over {budget.size} in {self.limits.frame_budget_window:g} s")
