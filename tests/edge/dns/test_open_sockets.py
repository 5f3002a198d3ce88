"""The DNS server's UDP and TCP sockets on one port, when the port is the kernel's pick."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.netns import netns_permitted, sh

REPO = Path(__file__).resolve().parents[3]
FIRST_PORT, PORTS = 40000, 100

# Run inside the namespace: every ephemeral port but the last is held by a TCP socket that
# is bound without SO_REUSEADDR (as a client connection's port, or one in TIME_WAIT).
HOLD_ALL_BUT_ONE = f"""
import socket, trio
from edge.dns.server import open_sockets
held = []
for port in range({FIRST_PORT}, {FIRST_PORT + PORTS - 1}):
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    held.append(sock)
udp, tcp = trio.run(open_sockets, "127.0.0.1", 0)
print(udp.getsockname()[1], tcp.getsockname()[1])
"""


@pytest.fixture
def narrow_namespace():
    """A network namespace with loopback up and PORTS ephemeral ports."""
    if reason := netns_permitted():
        pytest.skip(reason)
    name = f"bwdns{os.getpid()}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", name, "sysctl", "-qw",
           f"net.ipv4.ip_local_port_range={FIRST_PORT} {FIRST_PORT + PORTS - 1}")
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


def test_port_zero_takes_the_one_port_free_for_tcp(narrow_namespace):
    # A UDP pick first would land on a port TCP cannot have 99 times in 100, five times over.
    result = subprocess.run(["ip", "netns", "exec", narrow_namespace, sys.executable, "-c", HOLD_ALL_BUT_ONE],
                            capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(FIRST_PORT + PORTS - 1)] * 2
