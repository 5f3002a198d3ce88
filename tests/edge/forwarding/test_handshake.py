"""The sans-IO opening of a forwarding connection between edges: the token and the hello."""

from __future__ import annotations

import time

import pytest

from edge.access.keys import Signer
from edge.forwarding.handshake import MAX_HELLO, TOKEN_LIFETIME, HelloReader, hello, peer_token, verify_token
from shared.errors import AuthError, ProtocolError

RUN_ID = "6f1c7a52-0000-4000-8000-000000000001"


@pytest.fixture
def signer(tmp_path) -> Signer:
    return Signer.load_or_create(tmp_path, "https://example.test")


def test_a_token_names_its_sender_to_the_edge_it_was_made_for(signer):
    keys = {signer.kid: signer.public_jwk()}
    assert verify_token(peer_token(signer, "edge-2", RUN_ID), keys, RUN_ID) == "edge-2"


@pytest.mark.parametrize("case", ["other audience", "unknown key", "expired", "access assertion", "garbage"])
def test_anything_else_is_refused(signer, tmp_path, case):
    keys = {signer.kid: signer.public_jwk()}
    other = Signer.load_or_create(tmp_path / "other", "https://example.test")
    token = {
        "other audience": lambda: peer_token(signer, "edge-2", "another-run"),
        "unknown key": lambda: peer_token(other, "edge-2", RUN_ID),
        "expired": lambda: peer_token(signer, "edge-2", RUN_ID, now=time.time() - TOKEN_LIFETIME - 60),
        "access assertion": lambda: signer.assertion(RUN_ID, "edge-2"),  # same key, not an edge token
        "garbage": lambda: "x.y.z",
    }[case]()
    with pytest.raises(AuthError):
        verify_token(token, keys, RUN_ID)


def test_the_hello_survives_any_split(signer):
    token = peer_token(signer, "edge-2", RUN_ID)
    wire = hello(token) + b"after"
    for cut in range(0, len(wire) + 1, 7):
        reader = HelloReader()
        first = reader.feed(wire[:cut])
        assert first == (None, b"") or first == (token, wire[len(hello(token)):cut])
        if first[0] is None:
            assert reader.feed(wire[cut:]) == (token, b"after")


@pytest.mark.parametrize("wire", [b"GET / HTTP/1.1\r\n", b"burrow-edge-peer/1 \xff\n", b"x" * (MAX_HELLO + 1)])
def test_what_is_not_a_hello_is_refused(wire):
    with pytest.raises(ProtocolError):
        HelloReader().feed(wire)
