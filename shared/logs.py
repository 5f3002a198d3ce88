"""Log setup shared by both CLIs: level, destination and format (text or JSON lines).

Messages follow `event.name key=value ...`. The text format prints them as they are,
after time, level and logger; the JSON format splits them into fields, one object per
line. Records may carry `extra={"fields": {...}}` (the access log does): those fields
are written as they are, typed, instead of being parsed from the message.
Secrets never reach a log line: callers log ids and names, never tokens or keys.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
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
    """One `access` record at INFO carrying `fields`: `logger.info` without its search of
    the stack for the caller's file and line (one of these per request)."""
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


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, the message's fields, any exception."""

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


def log_native_cores(log: logging.Logger) -> None:
    """At debug: whether the sans-IO cores run compiled or as pure Python, and why (shared/native.py)."""
    if log.isEnabledFor(logging.DEBUG):
        why = native.pure_reason()
        log.debug("native.cores compiled=%s%s", "no" if why else "yes", f" reason={safe(why)}" if why else "")
