"""Quick tunnels' sans-IO core: names, the per-source window, verification, grace expiry;
and how the router overlays them on the registry's zones (DNS and routing)."""

from __future__ import annotations

import itertools
import re

import pytest

from edge.dns.zone import Zone, Zones
from edge.routing.router import Router, TunnelBusy, TunnelLimits
from edge.tunnels.quick import QuickRefused, QuickSettings, QuickTunnels, SourceWindow, new_hostname, parse_per_period, source_key
from edge.tunnels.quick_service import QuickService
from shared.errors import AuthError, ConfigError

ZONE = "example.test"
SECRET = b"s" * 32


def never_taken(hostname: str) -> bool:
    return False


def test_names_are_three_words_under_quick_dot_zone() -> None:
    names = {new_hostname(ZONE) for _ in range(200)}
    assert all(re.fullmatch(r"[a-z]+-[a-z]+-[a-z]+\.quick\.example\.test", name) for name in names), names
    assert len(names) > 190  # random: ~3.6e8 combinations


def test_a_source_gets_its_limit_per_window_and_others_are_unaffected() -> None:
    window = SourceWindow(limit=2, window=3600.0)
    assert window.take("127.0.0.2", 0.0) and window.take("127.0.0.2", 10.0)
    assert not window.take("127.0.0.2", 20.0)
    assert window.retry_after("127.0.0.2", 20.0) == 3580.0
    assert window.take("127.0.0.3", 20.0)
    assert not window.take("127.0.0.2", 3599.0)
    assert window.take("127.0.0.2", 3600.0)  # the first event left the window


def test_the_window_tracks_a_bounded_number_of_sources() -> None:
    window = SourceWindow(limit=1, window=60.0, max_sources=3)
    for n in range(10):
        assert window.take(f"10.0.0.{n}", float(n))
    assert len(window._events) <= 3


def test_create_refuses_past_the_per_source_limit_with_429() -> None:
    quick = QuickTunnels(ZONE, QuickSettings(per_source=1))
    quick.create("127.0.0.2", SECRET, 0.0, never_taken)
    with pytest.raises(QuickRefused, match=r"127\.0\.0\.2 created 1 quick tunnels in the last hour; retry in 3600s") as refused:
        quick.create("127.0.0.2", SECRET, 0.0, never_taken)
    assert refused.value.status == 429 and refused.value.retry_after == 3600.0
    quick.create("127.0.0.3", SECRET, 0.0, never_taken)


def test_create_refuses_past_the_edge_wide_maximum_with_503() -> None:
    quick = QuickTunnels(ZONE, QuickSettings(max_tunnels=1))
    quick.create("127.0.0.2", SECRET, 0.0, never_taken)
    with pytest.raises(QuickRefused) as refused:
        quick.create("127.0.0.3", SECRET, 0.0, never_taken)
    assert refused.value.status == 503


def test_names_taken_by_an_account_or_another_quick_tunnel_are_skipped() -> None:
    names = itertools.cycle(["owned.quick.example.test", "a.quick.example.test", "b.quick.example.test"])
    quick = QuickTunnels(ZONE, name=lambda zone: next(names))
    first = quick.create("127.0.0.2", SECRET, 0.0, lambda host: host == "owned.quick.example.test")
    second = quick.create("127.0.0.2", SECRET, 0.0, lambda host: host == "owned.quick.example.test")
    assert (first.hostname, second.hostname) == ("a.quick.example.test", "b.quick.example.test")
    with pytest.raises(QuickRefused, match="no free quick tunnel name"):
        quick.create("127.0.0.2", SECRET, 0.0, lambda host: True)


def test_verify_checks_the_secret_and_ignores_other_ids() -> None:
    quick = QuickTunnels(ZONE)
    tunnel = quick.create("127.0.0.2", SECRET, 0.0, never_taken)
    assert SECRET.hex() not in repr(tunnel) and tunnel.secret_hash != SECRET
    assert quick.verify(tunnel.id, SECRET) is tunnel
    assert quick.verify("not-a-quick-tunnel", SECRET) is None
    with pytest.raises(AuthError):
        quick.verify(tunnel.id, b"x" * 32)


def test_a_tunnel_expires_grace_seconds_after_its_last_session() -> None:
    quick = QuickTunnels(ZONE, QuickSettings(grace=60.0))
    tunnel = quick.create("127.0.0.2", SECRET, 0.0, never_taken)
    quick.session_started(tunnel.id)
    quick.session_started(tunnel.id)
    assert quick.expire(1000.0) == []  # serving: never expires
    quick.session_ended(tunnel.id, 1000.0)
    assert quick.expire(2000.0) == []  # one session left
    quick.session_ended(tunnel.id, 2000.0)
    assert quick.expire(2059.0) == []
    quick.session_started(tunnel.id)  # a reconnect within the grace keeps the name
    quick.session_ended(tunnel.id, 2059.5)
    assert quick.expire(2100.0) == []
    assert quick.expire(2119.5) == [tunnel] and quick.hosts() == {}
    quick.session_ended(tunnel.id, 2120.0)  # a late end of a forgotten tunnel is harmless


def test_a_tunnel_never_connected_expires_grace_seconds_after_creation() -> None:
    quick = QuickTunnels(ZONE, QuickSettings(grace=5.0))
    tunnel = quick.create("127.0.0.2", SECRET, 100.0, never_taken)
    assert quick.hosts() == {tunnel.hostname: tunnel.id}
    assert quick.expire(104.9) == [] and quick.expire(105.0) == [tunnel]


@pytest.mark.parametrize(("text", "expected"), [("10/h", (10, 3600.0)), ("3/30m", (3, 1800.0)), ("5", (5, 3600.0)), ("2/2h", (2, 7200.0))])
def test_parse_per_period(text: str, expected: tuple[int, float]) -> None:
    assert parse_per_period(text) == expected


@pytest.mark.parametrize("text", ["0/h", "ten/h", "10/x", "-1/h", "10/0s"])
def test_parse_per_period_refuses_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="--quick-tunnels-per-ip"):
        parse_per_period(text)


def test_zones_with_hosts_add_cnames_and_leave_the_registry_snapshot_alone() -> None:
    zone = Zone(ZONE, {"app.example.test": "t1.tunnels.example.test"}, frozenset({"t1"}))
    zones = Zones((zone,))
    merged = zones.with_hosts({"a-b-c.quick.example.test": "q1", "x.elsewhere.test": "q2"})
    assert merged.tunnel_for("a-b-c.quick.example.test") == "q1"
    assert merged.tunnel_for("app.example.test") == "t1"
    assert merged.zones[0].cname("a-b-c.quick.example.test") == "q1.tunnels.example.test"
    assert zones.tunnel_for("a-b-c.quick.example.test") is None and "q1" not in zone.tunnel_ids


async def test_the_service_routes_and_limits_through_the_router() -> None:
    wildcard = Zone(ZONE, {"*.example.test": "t1.tunnels.example.test", "own.quick.example.test": "t1.tunnels.example.test"}, frozenset({"t1"}))
    router = Router(Zones((wildcard,)))
    names = iter(["own.quick.example.test", "free.quick.example.test"])
    service = QuickService(QuickTunnels(ZONE, QuickSettings(max_streams=1, max_body=10), name=lambda zone: next(names)), router, "127.0.0.1:7844")
    answer = service.create("127.0.0.2")
    assert answer["hostname"] == "free.quick.example.test"  # the account's exact record is skipped, its wildcard owns nothing
    assert router.tunnel_for("free.quick.example.test") == answer["id"]
    assert router.limits[answer["id"]] == TunnelLimits(1, 10)
    router.update_zones(Zones((wildcard,)))  # a registry refresh keeps the quick names
    assert router.tunnel_for("free.quick.example.test") == answer["id"]

    class Busy:
        accepting, active_streams = True, 1

    router.add(answer["id"], Busy())
    with pytest.raises(TunnelBusy) as busy:
        router.pick(answer["id"])
    assert busy.value.status == 429


def test_no_wildcard_answers_under_quick_dot_zone() -> None:
    zone = Zone(ZONE, {"*.example.test": "t1.tunnels.example.test"}, frozenset({"t1"}))
    assert zone.owner("app.example.test") == "*.example.test"
    assert zone.owner("a-b-c.quick.example.test") is None and zone.owner("quick.example.test") is None
    merged = Zones((zone,)).with_hosts({"a-b-c.quick.example.test": "q1"})
    assert merged.tunnel_for("a-b-c.quick.example.test") == "q1" and merged.tunnel_for("x-y-z.quick.example.test") is None


def test_an_ipv6_source_is_its_slash_64() -> None:
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7" and source_key("192.0.2.7") == "192.0.2.7"
    quick = QuickTunnels(ZONE, QuickSettings(per_source=1))
    quick.create("2001:db8:1:2::10", SECRET, 0.0, never_taken)
    with pytest.raises(QuickRefused, match=r"2001:db8:1:2::/64 created 1"):
        quick.create("2001:db8:1:2::11", SECRET, 0.0, never_taken)
    quick.create("2001:db8:1:3::10", SECRET, 0.0, never_taken)


def test_by_default_a_name_goes_60_seconds_after_the_last_session() -> None:
    quick = QuickTunnels(ZONE)
    tunnel = quick.create("127.0.0.2", SECRET, 0.0, never_taken)
    quick.session_started(tunnel.id)
    quick.session_ended(tunnel.id, 100.0)
    assert quick.expire(159.9) == [] and quick.expire(160.0) == [tunnel]
