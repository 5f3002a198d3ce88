"""Issue 3 acceptance (DNS): the edge answers for its zone, checked with real `dig` and dnslib's client."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from tests.e2e.conftest import ZONE, Edge, start_origin

QUERY_TIMEOUT = 5.0


@dataclass
class Dig:
    """What `dig` printed: status, header flags, and the answer and authority sections as (name, type, data)."""

    status: str
    flags: set[str]
    answer: list[tuple[str, str, str]]
    authority: list[tuple[str, str, str]]


def dig(edge: Edge, name: str, qtype: str = "A", *options: str) -> Dig:
    return dig_at([], "127.0.0.1", edge.dns_port, name, qtype, *options)


def dig_at(prefix: list[str], server: str, port: int, name: str, qtype: str = "A", *options: str) -> Dig:
    """`dig @server` run through `prefix` (e.g. `ip netns exec NS`); fails the test when dig gets no reply."""
    path = shutil.which("dig")
    assert path, "dig is missing: install bind9-dnsutils (`make test` installs it when it can)"
    result = subprocess.run(
        [*prefix, path, f"@{server}", "-p", str(port), "+time=2", "+tries=1", *options, name, qtype],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sections: dict[str, list[tuple[str, str, str]]] = {"ANSWER": [], "AUTHORITY": []}
    status, flags, current = "", set(), None
    for line in result.stdout.splitlines():
        if "status:" in line:
            status = line.split("status:")[1].split(",")[0].strip()
        elif line.startswith(";; flags:"):
            flags = set(line.split(";")[2].split(":")[1].split())
        elif line.startswith(";; ") and line.endswith(" SECTION:"):
            current = sections.get(line[3:].split()[0])
        elif not line.strip():
            current = None
        elif current is not None:
            owner, _ttl, _class, rtype, *data = line.split()
            current.append((owner, rtype, " ".join(data)))
    return Dig(status, flags, sections["ANSWER"], sections["AUTHORITY"])


def ask(edge: Edge, name: str, qtype: str = "A", *, tcp: bool = False) -> DNSRecord:
    """The same question through dnslib's client."""
    reply = DNSRecord.question(name, qtype).send("127.0.0.1", edge.dns_port, tcp=tcp, timeout=QUERY_TIMEOUT)
    return DNSRecord.parse(reply)


@dataclass
class Routed:
    edge: Edge
    env: dict
    tunnel_id: str

    @property
    def target(self) -> str:
        return f"{self.tunnel_id}.tunnels.{ZONE}."

    def route(self, hostname: str) -> subprocess.CompletedProcess:
        return self.edge.cli("burrow", "tunnel", "route", "dns", "dns-tunnel", hostname, env=self.env, check=False)


@pytest.fixture(scope="module")
def routed(edge):
    env = edge.login("dora")
    tunnel_id = edge.cli("burrow", "tunnel", "create", "dns-tunnel", env=env).stdout.strip()
    edge.cli("burrow", "tunnel", "route", "dns", "dns-tunnel", f"app.{ZONE}", env=env)
    return Routed(edge, env, tunnel_id)


def test_listen_file_reports_the_dns_port(edge):
    assert json.loads((edge.home / "listen.json").read_text())["dns"] == f"127.0.0.1:{edge.dns_port}"


@pytest.mark.parametrize("transport", [(), ("+tcp",)], ids=["udp", "tcp"])
def test_routed_name_answers_cname_and_address(routed, transport):
    reply = dig(routed.edge, f"app.{ZONE}", "A", *transport)
    assert reply.status == "NOERROR"
    assert "aa" in reply.flags and "ra" not in reply.flags
    assert reply.answer == [(f"app.{ZONE}.", "CNAME", routed.target), (routed.target, "A", "127.0.0.1")]


def test_tunnel_target_has_the_edge_address(routed):
    assert dig(routed.edge, routed.target).answer == [(routed.target, "A", "127.0.0.1")]


def test_apex_has_soa_and_ns(routed):
    (soa,) = dig(routed.edge, ZONE, "SOA").answer
    assert soa[:2] == (f"{ZONE}.", "SOA") and soa[2].startswith(f"ns1.{ZONE}. hostmaster.{ZONE}. ")
    assert dig(routed.edge, ZONE, "NS").answer == [(f"{ZONE}.", "NS", f"ns1.{ZONE}.")]
    assert dig(routed.edge, f"ns1.{ZONE}").answer == [(f"ns1.{ZONE}.", "A", "127.0.0.1")]


def test_unknown_name_is_nxdomain_with_soa(routed):
    reply = dig(routed.edge, f"nowhere.{ZONE}")
    assert reply.status == "NXDOMAIN" and "aa" in reply.flags
    assert reply.answer == [] and [rr[:2] for rr in reply.authority] == [(f"{ZONE}.", "SOA")]


def test_name_outside_the_zone_is_refused(routed):
    reply = dig(routed.edge, "example.org")
    assert reply.status == "REFUSED" and "aa" not in reply.flags and "ra" not in reply.flags
    assert RCODE[ask(routed.edge, "example.org").header.rcode] == "REFUSED"


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_route_is_visible_as_soon_as_the_cli_returns(routed, tcp):
    hostname = f"fresh-{'tcp' if tcp else 'udp'}.{ZONE}"
    assert RCODE[ask(routed.edge, hostname, tcp=tcp).header.rcode] == "NXDOMAIN"
    result = routed.route(hostname)
    assert result.returncode == 0, result.stderr
    reply = ask(routed.edge, hostname, tcp=tcp)  # no wait: the API refreshed the snapshot before answering
    assert [(str(rr.rname), QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] == [
        (f"{hostname}.", "CNAME", routed.target), (routed.target, "A", "127.0.0.1"),
    ]


def test_a_kept_answer_follows_a_moved_route_and_a_deleted_tunnel_at_once(routed):
    """UDP answers are kept per snapshot (docs/dns.md): the first query after a change sees it."""
    edge, hostname = routed.edge, f"moving.{ZONE}"
    other = edge.cli("burrow", "tunnel", "create", "dns-other", env=routed.env).stdout.strip()
    assert routed.route(hostname).returncode == 0

    def answer() -> list[tuple[str, str, str]]:
        reply = ask(edge, hostname)
        return [(str(rr.rname), QTYPE[rr.rtype], str(rr.rdata)) for rr in reply.rr] + [("rcode", RCODE[reply.header.rcode], "")]

    first = answer()
    assert answer() == first and first[0] == (f"{hostname}.", "CNAME", routed.target)  # the second from the cache
    moved = edge.cli("burrow", "tunnel", "route", "dns", "--overwrite-dns", "dns-other", hostname, env=routed.env, check=False)
    assert moved.returncode == 0, moved.stderr
    assert answer()[0] == (f"{hostname}.", "CNAME", f"{other}.tunnels.{ZONE}.")
    edge.cli("burrow", "tunnel", "delete", "dns-other", env=routed.env)
    assert answer() == [("rcode", "NXDOMAIN", "")]
    assert dig(edge, f"app.{ZONE}").answer[0] == (f"app.{ZONE}.", "CNAME", routed.target)


def test_wildcard_route_answers_and_reaches_the_tunnel(routed):
    edge = routed.edge
    result = routed.route(f"*.dev.{ZONE}")
    assert result.returncode == 0, result.stderr
    deep = f"a.b.dev.{ZONE}"
    reply = dig(edge, deep)
    assert reply.status == "NOERROR" and "aa" in reply.flags
    assert reply.answer == [(f"{deep}.", "CNAME", routed.target), (routed.target, "A", "127.0.0.1")]
    assert dig(edge, f"dev.{ZONE}").status == "NOERROR"  # the wildcard's parent exists, with no data

    origin, origin_port = start_origin(edge.tmp, routed.env)
    edge.procs.append(origin)
    config = Path(routed.env["BURROW_HOME"]) / "config.yml"
    config.write_text(
        f"tunnel: dns-tunnel\ningress:\n"
        f"  - hostname: '*.dev.{ZONE}'\n    service: http://127.0.0.1:{origin_port}\n"
        f"  - service: http_status:404\n"
    )
    connector = edge.start(["burrow", "tunnel", "run", "--config", config, "dns-tunnel"], "dns-connector", routed.env)
    connector.wait_for_log(r"tunnel\.registered index=", count=4)
    address = reply.answer[-1][2]  # connect where the edge's DNS says
    # The dev certificate covers `*.example.test`, one label deep; a.b.dev needs its own (ACME, later): -k.
    curl = subprocess.run(
        [
            "curl", "-sS", "-k", "--max-time", "30", "--resolve", f"{deep}:{edge.https_port}:{address}",
            f"https://{deep}:{edge.https_port}/via-dns",
        ],
        capture_output=True, text=True, timeout=60,
    )
    assert curl.returncode == 0, curl.stderr
    echo = json.loads(curl.stdout)
    assert echo["target"] == "/via-dns"
