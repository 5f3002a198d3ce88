"""Datagrams inside a tunnel stream: boundaries survive any split of the bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import datagrams
from shared.errors import ProtocolError


@given(st.lists(st.binary(max_size=3000), max_size=20), st.lists(st.integers(1, 5000), max_size=30))
def test_datagrams_come_out_whole_however_the_stream_is_cut(sent: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(map(datagrams.pack, sent))
    reader, received, pos = datagrams.DatagramReader(), [], 0
    for size in cuts + [len(wire)]:
        received += reader.feed(wire[pos : pos + size])
        pos += size
    assert received == sent and reader.pending == 0


def test_an_empty_datagram_is_a_datagram() -> None:
    assert datagrams.DatagramReader().feed(datagrams.pack(b"") * 2) == [b"", b""]


def test_a_datagram_over_the_udp_limit_is_refused_both_ways() -> None:
    with pytest.raises(ProtocolError, match="limit 65507"):
        datagrams.pack(bytes(datagrams.MAX_DATAGRAM + 1))
    with pytest.raises(ProtocolError, match="a datagram of 65535 bytes"):
        datagrams.DatagramReader().feed(b"\xff\xff")
