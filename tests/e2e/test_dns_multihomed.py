"""Issue 21: on a host with two addresses, the edge's DNS answers from the address it was asked.

The edge listens on a wildcard address in a namespace with two links (`netns.TwoLinks`).
A client on the second link asks the first link's address: the query arrives on the
second link, and the reply must still leave from the address asked, since dig (like
every resolver) ignores a reply from another one. UDP and TCP, IPv4 and IPv6.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import netns
from tests.e2e.conftest import BIN, START_TIMEOUT, ZONE, Proc, wait_until
from tests.e2e.test_dns import dig_at

HOST = f"app.{ZONE}"
HTTPS = f"{netns.FIRST_EDGE[0]}:8443"
LISTENS = ("0.0.0.0:53", "[::]:53", ":53")  # IPv4 only; IPv6 (dual stack); the default, dual stack
ASKED = {  # (client namespace role, edge address asked)
    "v4-across": ("second", netns.FIRST_EDGE[0]),
    "v4-own-link": ("second", netns.SECOND_EDGE[0]),
    "v4-first-link": ("first", netns.FIRST_EDGE[0]),
    "v6-across": ("second", netns.FIRST_EDGE[1]),
    "v6-own-link": ("second", netns.SECOND_EDGE[1]),
}


@dataclass
class Lab:
    topo: netns.TwoLinks
    home: Path  # the edge's
    env: dict
    tmp: Path
    edge: Proc | None = None

    def cli(self, env: dict, *args: str) -> str:
        """`burrow`/`burrow-edge` inside the edge's namespace."""
        result = subprocess.run(self.topo.exec(self.topo.name("edge"), str(BIN / args[0]), *args[1:]),
                                capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
        return result.stdout

    def serve(self, dns_listen: str) -> None:
        """(Re)start the edge with `dns-listen` set to `dns_listen` in its edge.yml."""
        if self.edge is not None:
            self.edge.stop()
        config = self.home / "edge.yml"
        config.write_text(re.sub(r"(?m)^dns-listen: .*$", f"dns-listen: '{dns_listen}'", config.read_text()))
        listen = self.home / "listen.json"
        listen.unlink(missing_ok=True)
        self.edge = Proc(self.topo.exec(self.topo.name("edge"), str(BIN / "burrow-edge"), "serve", "--home", str(self.home)),
                         self.tmp / f"edge-{len(list(self.tmp.glob('edge-*.log')))}.log", self.env)
        wait_until(lambda: listen.exists() or not self.edge.alive(), START_TIMEOUT, "the edge to listen")
        assert self.edge.alive(), self.edge.log()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if shutil.which("dig") is None:
        pytest.skip("dig is missing: install bind9-dnsutils")
    reason = netns.netns_permitted()
    if reason is not None:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("multihomed")
    topo = netns.TwoLinks(f"bd{os.getpid() % 100000}")
    env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
    env["BURROW_HOME"] = str(tmp / "nobody")
    lab = Lab(topo, tmp / "edge", env, tmp)
    try:
        topo.create()
        lab.cli(env, "burrow-edge", "init", "--home", str(lab.home), "--zone", ZONE, "--dev-ca",
                "--public-ip", netns.FIRST_EDGE[0], "--public-ip", netns.FIRST_EDGE[1],
                "--https-listen", HTTPS, "--tunnel-listen", "127.0.0.1:7844", "--dns-listen", LISTENS[0])
        token = lab.cli(env, "burrow-edge", "account", "create", "dora", "--home", str(lab.home)).splitlines()[-1]
        lab.serve(LISTENS[0])
        user = {**env, "BURROW_HOME": str(tmp / "dora")}
        lab.cli(user, "burrow", "tunnel", "login", f"https://{HTTPS}", "--token", token, "--ca-file", str(lab.home / "ca.pem"))
        lab.cli(user, "burrow", "tunnel", "create", "dns-tunnel")
        lab.cli(user, "burrow", "tunnel", "route", "dns", "dns-tunnel", HOST)
        yield lab
    finally:
        if lab.edge is not None:
            lab.edge.stop()
        topo.destroy()


@pytest.fixture(scope="module", params=LISTENS)
def listening(lab, request) -> str:
    lab.serve(request.param)
    return request.param


@pytest.mark.parametrize("transport", [(), ("+tcp",)], ids=["udp", "tcp"])
@pytest.mark.parametrize("asked", ASKED.values(), ids=ASKED.keys())
def test_reply_comes_from_the_address_asked(lab, listening, asked, transport):
    client, server = asked
    if ":" in server and listening.startswith("0.0.0.0:"):
        pytest.skip("an IPv4 wildcard listener has no IPv6 address to answer from")
    reply = dig_at(lab.topo.exec(lab.topo.name(client)), server, 53, HOST, "A", *transport)
    assert reply.status == "NOERROR" and "aa" in reply.flags
    assert reply.answer[0][:2] == (f"{HOST}.", "CNAME")
    assert reply.answer[-1][1:] == ("A", netns.FIRST_EDGE[0])
