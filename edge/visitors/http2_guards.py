"""Sans-IO defences for the visitor HTTP/2 adapter: no trio, no clock (pass `now` in).

- `Http2Limits`: the SETTINGS, budgets and timers every visitor connection gets.

- `ResetRateGuard` spots the rapid-reset attack (CVE-2023-44487): many streams
  opened and reset by the client within a short window.
- `HeaderBlockMeter` follows frame boundaries in the client's byte stream and
  sizes each header block (HEADERS plus its CONTINUATION frames) before h2
  buffers it. h2 4.4.1 buffers up to 64 CONTINUATION frames of any size per
  block (`h2.frame_buffer.CONTINUATION_BACKLOG`), about 1 MiB at a 16 KiB
  frame size; the meter refuses much earlier.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
HEADERS = 0x1
CONTINUATION = 0x9
END_HEADERS = 0x4


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
    max_queued_control_frames: int = 1000  # PING/SETTINGS acks the peer has not read
    rapid_reset_streams: int = 100  # streams opened within the window before resets count
    rapid_reset_window: float = 1.0
    preface_timeout: float = 10.0  # preface and first SETTINGS
    idle_timeout: float = 75.0  # no open stream
    body_idle_timeout: float = 60.0
    send_timeout: float = 60.0
    read_size: int = 64 * 1024



class HeaderBlockTooLarge(Exception):
    """A client sent a header block larger than the hard cap."""


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


class HeaderBlockMeter:
    """Sizes header blocks in the raw client byte stream (after the preface)."""

    def __init__(self, max_block: int) -> None:
        self.max_block = max_block
        self._skip = len(PREFACE)  # bytes still to pass over: the preface, then each frame's payload
        self._header = bytearray()
        self._block: int | None = None  # bytes in the header block being received

    def feed(self, data: bytes) -> None:
        """Account for `data`; raise HeaderBlockTooLarge past the cap."""
        position, size = 0, len(data)
        while position < size:
            if self._skip:
                step = min(self._skip, size - position)
                self._skip -= step
                position += step
                continue
            take = min(FRAME_HEADER - len(self._header), size - position)
            self._header += data[position : position + take]
            position += take
            if len(self._header) == FRAME_HEADER:
                self._frame(int.from_bytes(self._header[:3], "big"), self._header[3], self._header[4])
                self._header.clear()

    def _frame(self, length: int, kind: int, flags: int) -> None:
        self._skip = length
        if kind == HEADERS:
            self._block = length
        elif kind == CONTINUATION and self._block is not None:
            self._block += length
        else:
            return
        if self._block > self.max_block:
            raise HeaderBlockTooLarge(f"header block over {self.max_block} bytes")
        if flags & END_HEADERS:
            self._block = None
