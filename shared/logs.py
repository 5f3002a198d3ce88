"""Log setup shared by both CLIs: level, destination and format (text or JSON lines).

Messages follow `event.name key=value ...`. The text format prints them as they are,
after time, level and logger; the JSON format splits them into fields, one object per
line. Records may carry `extra={"fields": {...}}` (the access log does): those fields
are written as they are, typed, instead of being parsed from the message.
Secrets never reach a log line: callers log ids and names, never tokens or keys.

The access log (one line a request) has a fast path once `configure` set it up: `log_access`
formats the line at once, without a `LogRecord`, and a background thread writes the lines
of up to `ACCESS_FLUSH_INTERVAL` seconds in one write (nginx's `access_log … buffer= flush=`);
what is still buffered is written at exit.
"""

from __future__ import annotations

import atexit
import json
import logging
import re
import sys
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

from shared import native
from shared.errors import ConfigError

LEVELS = ("debug", "info", "warning", "error")
ALIASES = {"warn": "warning"}  # cloudflared's spelling
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
ACCESS_LOGGER = "edge.access_log"
CONNECTOR_ACCESS_LOGGER = "connector.access_log"
ACCESS_OFF = "off"
ACCESS_FLUSH_INTERVAL = 0.05  # seconds an access line may wait to be written with the next ones

_PAIR = re.compile(r"(?:^|\s)([A-Za-z_][\w.]*)=")
_UNSAFE = re.compile(r"[\x00-\x20\x7f\"%]")


def check_level(level: str) -> int:
    name = ALIASES.get(level.lower(), level.lower())
    if name not in LEVELS:
        raise ConfigError(f"--loglevel must be one of {', '.join(LEVELS)}, not {level!r}")
    return getattr(logging, name.upper())


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"--log-format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def safe(value: object) -> str:
    """A value fit for one `key=value` token: spaces, quotes, controls and % percent-encoded."""
    text = str(value)
    return _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", text) if _UNSAFE.search(text) else text or "-"


def key_values(fields: dict[str, object]) -> str:
    """`key=value ...`, text values made `safe` (checked all at once: they nearly always are)."""
    texts = [value for value in fields.values() if isinstance(value, str)]
    if all(texts) and not _UNSAFE.search("".join(texts)):
        return " ".join([f"{key}={value}" for key, value in fields.items()])
    return " ".join([f"{key}={safe(value) if isinstance(value, str) else value}" for key, value in fields.items()])


def log_access(logger: logging.Logger, fields: dict[str, object]) -> None:
    """One `access` line at INFO carrying `fields`: through the `AccessLog` that `configure`
    set up for `logger`, else as a record (`logger.info` without its search of the stack)."""
    if (sink := _access_logs.get(logger.name)) is not None:
        sink.write(fields)
        return
    logger.handle(logger.makeRecord(logger.name, logging.INFO, "", 0, "access", (), None, extra={"fields": fields}))


def split_message(message: str) -> dict[str, str]:
    """`event.name k=v k2=two words` → {"event": ..., "k": "v", "k2": "two words"}.

    Text before the first `key=` is the event; a value runs until the next ` key=`."""
    pairs = list(_PAIR.finditer(message))
    head = message[: pairs[0].start()] if pairs else message
    fields: dict[str, str] = {"event": head.strip()} if head.strip() else {}
    for pair, following in zip(pairs, [*pairs[1:], None]):
        end = following.start() if following else len(message)
        fields[pair.group(1)] = message[pair.end():end]
    return fields


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER event key=value ...`; a record's `fields` are appended as key=value."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """`logging.Formatter.formatTime`, the date and time formatted once a second."""
        second, text = self._second
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return self.default_msec_format % (text, record.msecs)

    def access_line(self, logger: str, created: float, fields: dict[str, object]) -> str:
        """What `format` makes of an `access` record of `logger` carrying `fields`."""
        text = self.formatTime(_Created(created))
        return f"{text} INFO {logger} access {key_values(fields)}"

    def format(self, record: logging.LogRecord) -> str:
        """`logging.Formatter.format`, with a direct path for records with `fields` (the access log)."""
        fields = getattr(record, "fields", None)
        if not fields or record.args or record.exc_info or record.stack_info or type(record.msg) is not str:
            return super().format(record)
        record.message = record.msg
        record.asctime = self.formatTime(record)
        return f"{record.asctime} {record.levelname} {record.name} {record.msg} {key_values(fields)}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + key_values(fields)
        return line


class _Created:
    """What `TextFormatter.formatTime` reads of a record."""

    __slots__ = ("created", "msecs")

    def __init__(self, created: float) -> None:
        self.created = created
        self.msecs = (created - int(created)) * 1000


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, the message's fields, any exception."""

    def access_line(self, logger: str, created: float, fields: dict[str, object]) -> str:
        """What `format` makes of an `access` record of `logger` carrying `fields`."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": "info", "logger": logger, "event": "access",
        }
        return json.dumps(entry | fields, default=str)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = record.getMessage()
        fields = getattr(record, "fields", None)
        if fields:
            entry["event"] = message
            entry |= fields
        else:
            entry |= split_message(message)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class AccessLog:
    """The access lines of one logger, formatted as `handler` would and written to its stream
    by a background thread, every line of up to `ACCESS_FLUSH_INTERVAL` seconds in one write."""

    def __init__(self, logger: str, handler: logging.StreamHandler) -> None:
        self._logger = logger
        self._handler = handler
        self._format = handler.formatter.access_line  # type: ignore[union-attr]
        self._lines: deque[str] = deque()  # appended by the logging task, taken by the writer thread
        self._pending = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._write_batches, name=f"{logger} writer", daemon=True)
        self._writer.start()

    def write(self, fields: dict[str, object]) -> None:
        self._lines.append(self._format(self._logger, time.time(), fields))
        if not self._pending.is_set():
            self._pending.set()

    def flush(self) -> None:
        """Write the buffered lines now."""
        self._pending.clear()  # a line added from here on sets it again
        lines = []
        while self._lines:  # deque's append and popleft are atomic: no line is lost between threads
            lines.append(self._lines.popleft())
        if lines:
            with self._handler.lock:  # type: ignore[union-attr]
                stream = self._handler.stream
                try:
                    stream.write("\n".join(lines) + "\n")
                    stream.flush()
                except (OSError, ValueError):  # the stream closed or failed: as logging's handleError, go on
                    pass

    def close(self) -> None:
        self._closed = True
        self._pending.set()
        self._writer.join()
        self.flush()

    def _write_batches(self) -> None:
        while not self._closed:
            self._pending.wait()
            time.sleep(ACCESS_FLUSH_INTERVAL)
            self.flush()


_access_logs: dict[str, AccessLog] = {}  # logger name → its fast path, set by `configure`


def flush_access_logs() -> None:
    """Write every buffered access line now (at exit, and for a caller about to read the log)."""
    for sink in list(_access_logs.values()):
        sink.flush()


def _close_access_log(logger: str) -> None:
    if (old := _access_logs.pop(logger, None)) is not None:
        old.close()


atexit.register(flush_access_logs)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if check_format(fmt) == "json" else TextFormatter()


def _handler(path: Path | None, fmt: str) -> logging.Handler:
    if path is None:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        try:
            handler = logging.FileHandler(Path(path).expanduser(), encoding="utf-8")  # appends, like nginx
        except OSError as exc:
            raise ConfigError(f"cannot open log file {path}: {exc.strerror}") from None
    handler.setFormatter(formatter(fmt))
    return handler


def configure(
    level: str = "info", logfile: Path | None = None, fmt: str = "text", access_log: str | None = None,
    access_logger: str = ACCESS_LOGGER,
) -> None:
    """Send log records to stderr (or `logfile`, appended) in `fmt`.

    `access_log` (the request log, logger `access_logger`: `edge.access_log` or
    `connector.access_log`, written whatever the level): None → with the other records,
    "off" → nowhere, a path → that file only."""
    numeric = check_level(level)
    for name in list(_access_logs):  # the handlers they write to may be replaced below
        _close_access_log(name)
    # Neither format prints the thread or process: LogRecord need not look them up (per request).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root_handler = _handler(logfile, fmt)
    logging.basicConfig(level=numeric, handlers=[root_handler], force=True)
    access = logging.getLogger(access_logger)
    for old in list(access.handlers):
        access.removeHandler(old)
        old.close()
    access.setLevel(logging.CRITICAL + 1 if access_log == ACCESS_OFF else logging.INFO)
    access.propagate = True
    if access_log not in (None, ACCESS_OFF):
        access.addHandler(_handler(Path(access_log), fmt))
        access.propagate = False
    if access_log != ACCESS_OFF:
        _access_logs[access_logger] = AccessLog(access_logger, (access.handlers or [root_handler])[0])  # type: ignore[arg-type]


def log_native_cores(log: logging.Logger) -> None:
    """At debug: whether the sans-IO cores run compiled or as pure Python, and why (shared/native.py)."""
    if log.isEnabledFor(logging.DEBUG):
        why = native.pure_reason()
        log.debug("native.cores compiled=%s%s", "no" if why else "yes", f" reason={safe(why)}" if why else "")
