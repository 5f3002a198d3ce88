"""Acceptance 8 of the hardening work: fuzzing (hypothesis, bounded examples) of the two
parsers that read untrusted input: the tunnel registration message the edge reads from
any connection on the tunnel port, and the connector's config.yml with its ingress rules.
Every input gives a parsed value or the project's error type, never another exception."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connector.ingress.rules import Ingress
from shared.config import load_connector_config
from shared.errors import ConfigError, ProtocolError
from shared.registration import MAGIC, PROTOCOL_VERSION, RegistrationReader

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
REGISTER_KEYS = ["type", "version", "tunnel_id", "secret", "connector_id", "conn_index", "client_version"]


@st.composite
def registration_like(draw) -> dict:
    """Messages close to a real Register/Registered/Rejected, with fields dropped or retyped."""
    message = {
        "type": draw(st.sampled_from(["register", "registered", "rejected", "other"]) | json_values),
        "version": draw(st.just(PROTOCOL_VERSION) | json_values),
    }
    for key in [*REGISTER_KEYS[2:], "connection_id", "edge_id", "reason", "retryable"]:
        if draw(st.booleans()):
            message[key] = draw(st.sampled_from(["aGk=", "x", 0, 1.5, True]) | json_values)
    return message


def read(wire: bytes, chunk: int, expect_magic: bool):
    """Feed `wire` to a reader `chunk` bytes at a time; the first message, or None."""
    reader = RegistrationReader(expect_magic=expect_magic)
    for start in range(0, len(wire), chunk):
        message, _rest = reader.feed(wire[start : start + chunk])
        if message is not None:
            return message
    return None


def framed(body: bytes) -> bytes:
    return MAGIC + struct.pack("!I", len(body)) + body


@FUZZ
@given(st.binary(max_size=300), st.integers(1, 64), st.booleans())
@example(MAGIC + b"\x00\x00\x00\x05[[[[[", 64, True)
def test_registration_reader_on_arbitrary_bytes(data, chunk, expect_magic):
    try:
        read(data, chunk, expect_magic)
    except ProtocolError:
        pass


@FUZZ
@given(registration_like() | json_values, st.integers(1, 512))
@example({"type": "register", "version": PROTOCOL_VERSION, "tunnel_id": "t", "secret": "aGk=", "connector_id": "c", "conn_index": float("inf"), "client_version": "1"}, 512)
def test_registration_reader_on_json_messages(message, chunk):
    try:
        read(framed(json.dumps(message).encode()), chunk, expect_magic=True)
    except ProtocolError:
        pass


@example(b"[" * 5000)
@example(b'{"type": "register", "version": 1, "conn_index": 1e999}')
@FUZZ
@given(st.binary(max_size=2000))
def test_registration_reader_on_arbitrary_bodies(body):
    try:
        read(framed(body), 4096, expect_magic=True)
    except ProtocolError:
        pass


def load(text: str):
    """load_connector_config + Ingress.from_rules, as `burrow tunnel run` reads config.yml."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yml"
        path.write_text(text, encoding="utf-8")
        cfg = load_connector_config(path)
        return Ingress.from_rules(cfg.ingress, cfg.origin_request or None, source=str(path))


yaml_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30) | st.sampled_from(
    ["http://127.0.0.1:8080", "https://x:1", "unix:/run/x.sock", "tcp://h:22", "http_status:404", "hello_world",
     "*.example.com", "a.*.b", "^/api(", "10s", "-1s", "1e999", "ftp://x", "http://[::1]:80", "ssh://h"]
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["hostname", "service", "path", "originRequest", "connectTimeout", "noTLSVerify",
                         "httpHostHeader", "access", "required", "audTag", "http2Origin", "x"]) | st.text(max_size=8),
        children, max_size=4),
    max_leaves=15,
)


@st.composite
def configs(draw) -> str:
    """config.yml documents shaped like real ones: tunnel, ingress rules, originRequest."""
    doc = {"tunnel": draw(st.sampled_from(["web", 5, None]))}
    if draw(st.booleans()):
        doc["ingress"] = draw(st.lists(yaml_values, max_size=4) | yaml_values)
    if draw(st.booleans()):
        doc["originRequest"] = draw(yaml_values)
    if draw(st.booleans()):
        doc["ha-connections"] = draw(yaml_scalars)
    return yaml.safe_dump(doc, allow_unicode=True)


@FUZZ
@given(configs())
def test_config_yml_with_random_structure(text):
    try:
        load(text)
    except ConfigError:
        pass


@FUZZ
@given(st.text(max_size=300))
@example("ingress: &a [*a]")
@example("a: b\na: c\n")
@example("? [1]\n: 2\n")
@example("ingress:\n  - service: !!python/object/apply:os.system ['true']\n")
@example("ingress: " + "[" * 3000)
def test_config_yml_as_arbitrary_text(text):
    try:
        load(text)
    except ConfigError:
        pass
