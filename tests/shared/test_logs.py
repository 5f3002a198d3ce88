"""shared/logs.py: levels, destinations, the text and JSON formats, the access log switch."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time

import pytest

from shared import logs
from shared.errors import ConfigError


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    access_loggers = [logging.getLogger(name) for name in (logs.ACCESS_LOGGER, logs.CONNECTOR_ACCESS_LOGGER)]
    handlers, level = root.handlers[:], root.level
    yield
    for logger in (root, *access_loggers):
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for access in access_loggers:
        access.setLevel(logging.NOTSET)
        access.propagate = True


def test_split_message_takes_event_then_values_until_the_next_key():
    assert logs.split_message("request.failed host=a.test error=the origin refused it code=7") == {
        "event": "request.failed", "host": "a.test", "error": "the origin refused it", "code": "7",
    }
    assert logs.split_message("plain words") == {"event": "plain words"}


def test_safe_encodes_what_would_break_a_key_value_token():
    assert logs.safe('/a b"c%\n') == "/a%20b%22c%25%0A"
    assert logs.safe("") == "-"
    assert logs.safe(200) == "200"


def test_key_values_encode_any_unsafe_or_empty_text_value_and_leave_the_rest():
    assert logs.key_values({"host": "a.test", "status": 200, "ms": 1.5}) == "host=a.test status=200 ms=1.5"
    assert logs.key_values({"host": "a.test", "path": "/a b", "status": 200}) == "host=a.test path=/a%20b status=200"
    assert logs.key_values({"path": "/", "tunnel": ""}) == "path=/ tunnel=-"


def test_json_lines_to_a_file_with_typed_fields(tmp_path):
    path = tmp_path / "burrow.log"
    logs.configure("debug", path, "json")
    logging.getLogger("connector.x").debug("stream.routed host=%s rule=%d", "a.test", 2)
    logging.getLogger(logs.ACCESS_LOGGER).info("access", extra={"fields": {"status": 502, "path": "/a b"}})
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["level"] == "debug" and first["logger"] == "connector.x"
    assert (first["event"], first["host"], first["rule"]) == ("stream.routed", "a.test", "2")
    assert first["time"].endswith("+00:00")
    assert (second["event"], second["status"], second["path"]) == ("access", 502, "/a b")


def test_text_lines_append_fields_safely(tmp_path):
    path = tmp_path / "burrow.log"
    path.write_text("older line\n")
    logs.configure("info", path, "text")
    logging.getLogger(logs.ACCESS_LOGGER).info("access", extra={"fields": {"host": "a.test", "path": "/a b"}})
    logging.getLogger("edge.x").debug("hidden at info")
    lines = path.read_text().splitlines()
    assert lines[0] == "older line" and len(lines) == 2
    assert lines[1].endswith(" INFO edge.access_log access host=a.test path=/a%20b")


def test_access_log_own_file_off_or_with_the_rest_whatever_the_level(tmp_path):
    main, access = tmp_path / "main.log", tmp_path / "access.log"
    logs.configure("error", main, "text", str(access))
    logging.getLogger(logs.ACCESS_LOGGER).info("access", extra={"fields": {"n": 1}})
    assert "n=1" in access.read_text() and main.read_text() == ""

    logs.configure("error", main, "text")
    logging.getLogger(logs.ACCESS_LOGGER).info("access", extra={"fields": {"n": 2}})
    assert "n=2" in main.read_text() and "n=2" not in access.read_text()

    logs.configure("info", main, "text", logs.ACCESS_OFF)
    assert not logging.getLogger(logs.ACCESS_LOGGER).isEnabledFor(logging.INFO)


def test_the_connector_access_log_is_switched_alike_and_log_access_writes_typed_fields(tmp_path):
    main, access = tmp_path / "main.log", tmp_path / "access.log"
    logs.configure("warning", main, "json", str(access), logs.CONNECTOR_ACCESS_LOGGER)
    logs.log_access(logging.getLogger(logs.CONNECTOR_ACCESS_LOGGER), {"status": 504, "rule": 2})
    logs.flush_access_logs()  # written by a background thread, in batches
    [entry] = [json.loads(line) for line in access.read_text().splitlines()]
    assert (entry["logger"], entry["level"], entry["event"]) == (logs.CONNECTOR_ACCESS_LOGGER, "info", "access")
    assert (entry["status"], entry["rule"]) == (504, 2) and main.read_text() == ""

    logs.configure("info", main, "text", logs.ACCESS_OFF, logs.CONNECTOR_ACCESS_LOGGER)
    assert not logging.getLogger(logs.CONNECTOR_ACCESS_LOGGER).isEnabledFor(logging.INFO)


def test_levels_accept_any_case_and_cloudflared_warn():
    assert logs.check_level("DEBUG") == logging.DEBUG
    assert logs.check_level("warn") == logs.check_level("warning") == logging.WARNING


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"level": "loud"}, "--loglevel must be one of"),
        ({"fmt": "xml"}, "--log-format must be one of"),
        ({"logfile": "/nonexistent-dir/x.log"}, "cannot open log file /nonexistent-dir/x.log"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        logs.configure(**kwargs)


def test_access_lines_are_written_in_batches_by_a_background_thread_as_records_would_be(tmp_path):
    main = tmp_path / "main.log"
    logs.configure("info", main, "text", None)
    logger = logging.getLogger(logs.ACCESS_LOGGER)
    logs.log_access(logger, {"host": "a.test", "path": "/a b", "status": 200})
    logger.handle(logger.makeRecord(logger.name, logging.INFO, "", 0, "access", (), None, extra={"fields": {"n": 1}}))
    deadline = time.monotonic() + 5
    while main.read_text().count("\n") < 2 and time.monotonic() < deadline:  # no flush asked for
        time.sleep(0.01)
    slow, fast = main.read_text().splitlines()  # the record at once, the buffered line up to 50 ms later
    assert fast.split(" ", 2)[2] == "INFO edge.access_log access host=a.test path=/a%20b status=200"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", " ".join(fast.split(" ")[:2]))
    assert slow.split(" ", 2)[2] == "INFO edge.access_log access n=1"


def test_json_access_lines_match_the_json_formatter():
    line = logs.JsonFormatter().access_line(logs.ACCESS_LOGGER, 0.25, {"status": 502, "path": "/a b"})
    assert json.loads(line) == {"time": "1970-01-01T00:00:00.250+00:00", "level": "info", "logger": logs.ACCESS_LOGGER,
                                "event": "access", "status": 502, "path": "/a b"}


def test_buffered_access_lines_are_written_at_exit_none_lost_to_the_writer_thread(tmp_path):
    access = tmp_path / "access.log"
    code = ("import logging; from shared import logs; logs.configure('info', None, 'text', %r);"
            "[logs.log_access(logging.getLogger(logs.ACCESS_LOGGER), {'n': n}) for n in range(20000)]") % str(access)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # the thread writes batches meanwhile
    assert [line.rsplit("=", 1)[1] for line in access.read_text().splitlines()] == [str(n) for n in range(20000)]
