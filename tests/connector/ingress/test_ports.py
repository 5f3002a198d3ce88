"""connector/ingress/ports.py: `tcp:` and `udp:` validated by entry and key, each tcp entry's
`originRequest` over the top-level one."""

from __future__ import annotations

import pytest

from connector.ingress.ports import PortRoute, UdpService
from connector.ingress.rules import Ingress, IngressError
from connector.ingress.services import TcpService

CATCH_ALL = [{"service": "http_status:404"}]


def build(tcp=None, udp=None, defaults=None) -> Ingress:
    return Ingress.from_rules(CATCH_ALL, defaults, "config.yml", None, tcp, udp)


def test_valid_routes_by_port_with_their_options():
    ingress = build(
        tcp=[{"port": 20022, "service": "tcp://127.0.0.1:22", "originRequest": {"proxyProtocol": "v2"}},
             {"port": 20432, "service": "tcp://[::1]:5432"}],
        udp=[{"port": 20053, "service": "udp://dns.internal:53"}],
        defaults={"connectTimeout": "5s"},
    )  # fmt: skip
    ssh, pg = ingress.tcp[20022], ingress.tcp[20432]
    assert ssh.service == TcpService("tcp", "127.0.0.1", 22) and ssh.origin_request.proxy_protocol == "v2"
    assert ssh.origin_request.connect_timeout == 5.0 and pg.origin_request.proxy_protocol == ""
    assert str(pg.service) == "tcp://[::1]:5432"
    assert ingress.udp == {20053: PortRoute("udp", 20053, UdpService("dns.internal", 53))}
    assert str(ingress.udp[20053].service) == "udp://dns.internal:53"
    assert build().tcp == {} and build().udp == {}


@pytest.mark.parametrize(
    "tcp, udp, problem",
    [
        ("20022", None, "config.yml: tcp: must be a list of {port, service} entries, not str"),
        (["20022"], None, "config.yml: tcp[1]: must be a mapping (port, service, originRequest), not str"),
        ([{"port": 0, "service": "tcp://a:1"}], None, "tcp[1].port: must be a port number 1-65535"),
        ([{"port": True, "service": "tcp://a:1"}], None, "tcp[1].port: must be a port number"),
        ([{"port": 1, "service": "tcp://a"}], None, "tcp[1].service: 'tcp://a' is not a TCP origin: use tcp://HOST:PORT"),
        ([{"port": 1, "service": "ssh://a:22"}], None, "is not a TCP origin"),
        ([{"port": 1, "service": "tcp://a:1"}, {"port": 1, "service": "tcp://b:2"}], None, "tcp[2].port: port 1 is listed twice"),
        (None, [{"port": 1, "service": "tcp://a:1"}], "udp[1].service: 'tcp://a:1' is not a UDP origin"),
        (None, [{"port": 1, "service": "udp://a:1", "originRequest": {}}], "udp[1].originRequest: unknown key"),
        (None, [{"port": 1, "service": "udp://a:x"}], "udp[1].service: 'udp://a:x' is an invalid address"),
    ],
)
def test_each_problem_names_its_entry_and_key(tcp, udp, problem):
    with pytest.raises(IngressError) as info:
        build(tcp, udp)
    assert any(problem in line for line in info.value.problems), info.value.problems
