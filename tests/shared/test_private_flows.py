"""Private-network flows, sans-IO: targets, reply codes, datagram framing, `warp-routing`, registration (issue 17)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import private_flows as flows
from shared import registration
from shared.config import WarpRouting, load_connector_config
from shared.errors import ConfigError, ProtocolError


def test_target_header_round_trips_and_bad_ones_are_clear() -> None:
    for target in (flows.Target("tcp", "198.18.5.10", 80), flows.Target("udp", "2001:db8::53", 53), flows.Target("tcp", "printer.lan", 631)):
        assert flows.parse_target_header(target.header()) == target
    assert flows.Target("udp", "2001:db8::53", 53).authority == "[2001:db8::53]:53"
    assert flows.Target("tcp", "printer.lan", 1).ip is None
    for bad in (b"", b"tcp 198.18.5.10", b"sctp 198.18.5.10:80", b"tcp 198.18.5.10:0", b"tcp 198.18.5.10:70000", b"tcp a b:1", b"tcp :80"):
        with pytest.raises(ConfigError):
            flows.parse_target_header(bad)


def test_reply_code_comes_from_the_header_else_the_default() -> None:
    assert flows.reply_code([(flows.REPLY_HEADER, b"3")]) == flows.NETWORK_UNREACHABLE
    assert flows.reply_code([(flows.REPLY_HEADER, b"99")], flows.NOT_ALLOWED) == flows.NOT_ALLOWED
    assert flows.reply_code([]) == flows.GENERAL_FAILURE
    assert set(flows.REPLY_STATUS) == set(range(1, 9)) and len(flows.SOCKS_REPLIES) == 9


@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(1, 50))
def test_datagrams_survive_any_cut_of_the_stream(datagrams: list[bytes], step: int) -> None:
    wire = b"".join(flows.frame_datagram(d) for d in datagrams)
    reader = flows.DatagramReader()
    out = []
    for i in range(0, len(wire), step):
        out += reader.feed(wire[i : i + step])
    assert out == datagrams


def test_oversized_datagrams_are_refused() -> None:
    with pytest.raises(ProtocolError):
        flows.frame_datagram(b"x" * (flows.MAX_DATAGRAM + 1))
    with pytest.raises(ProtocolError):
        flows.DatagramReader().feed(b"\xff\xff")


def test_warp_routing_in_config_yml(tmp_path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("warp-routing:\n  enabled: true\n  resolveNames: true\n")
    assert load_connector_config(path).warp_routing == WarpRouting(True, True)
    path.write_text("tunnel: x\n")
    assert load_connector_config(path).warp_routing == WarpRouting(False, False)
    for text, message in (("warp-routing: yes-please\n", "warp-routing"), ("warp-routing:\n  enabled: 1\n", "must be true or false"),
                          ("warp-routing:\n  resolve: true\n", "unknown key warp-routing.resolve")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_connector_config(path)


def test_register_carries_warp_routing_only_when_on() -> None:
    on = registration.Register("t", b"s" * 32, "c", 0, "burrow/test", warp_routing=True)
    off = registration.Register("t", b"s" * 32, "c", 0, "burrow/test")
    assert b"warp_routing" not in off.to_wire()
    for message in (on, off):
        parsed, rest = registration.RegistrationReader(expect_magic=True).feed(message.to_wire())
        assert parsed == message and rest == b""
