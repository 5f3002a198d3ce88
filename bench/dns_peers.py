"""The DNS benchmark's reference servers: knotd and nsd serving the zone Burrow's edge serves.

The zone file gives every routed name the same answer as the edge (CNAME to the tunnel's
`<uuid>.tunnels.<zone>` name, which has the edge's address), so both servers answer an
A query with the same two records. Each server runs from its own config in a temp dir,
one worker, on loopback, started through `prefix` (e.g. `taskset -c 0`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dnslib import DNSRecord

SETUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

KNOT_CONF = """\
server:
    rundir: "{tmp}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{tmp}"
log:
  - target: stderr
    any: warning
zone:
  - domain: {zone}.
    file: "{zone_file}"
    journal-content: none
    zonefile-sync: -1
"""

NSD_CONF = """\
server:
    ip-address: 127.0.0.1@{port}
    server-count: 1
    username: ""
    chroot: ""
    database: ""
    zonesdir: "{tmp}"
    zonelistfile: "{tmp}/zone.list"
    xfrdfile: "{tmp}/xfrd.state"
    xfrdir: "{tmp}"
    pidfile: "{tmp}/nsd.pid"
    logfile: "{tmp}/nsd.log"
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: {zone}
    zonefile: "{zone_file}"
"""


def write_zone(path: Path, zone: str, tunnel_id: str, address: str, hostnames: Iterator[str]) -> None:
    """The edge's zone as a zone file: SOA, NS ns1, the addresses, one CNAME per routed name."""
    target = f"{tunnel_id}.tunnels.{zone}."
    with path.open("w") as f:
        f.write(f"$ORIGIN {zone}.\n$TTL 300\n")
        f.write(f"@ SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 1209600 60\n@ NS ns1.{zone}.\n")
        f.write(f"@ A {address}\nns1 A {address}\n{target} A {address}\n")
        f.writelines(f"{name}. CNAME {target}\n" for name in hostnames)


def free_dns_port(attempts: int = 20) -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (a name server listens on both): the
    kernel's TCP pick, which avoids ports client connections hold even in TIME_WAIT."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free for both UDP and TCP in {attempts} attempts")


def answers(port: int, name: str) -> bool:
    """One UDP A query for `name` gets a reply within a second."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.sendto(DNSRecord.question(name).pack(), ("127.0.0.1", port))
            return bool(sock.recv(4096))
        except OSError:
            return False


@contextlib.contextmanager
def running(cmd: list[str], log: Path, ready: Callable[[], bool], env: dict | None = None) -> Iterator[int]:
    """Start `cmd`, wait until `ready()`, yield its pid; SIGTERM (then SIGKILL) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            deadline = time.monotonic() + SETUP_TIMEOUT
            while not ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd[0]} did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.1)
            yield proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def program(name: str) -> str | None:
    return shutil.which(name) or next((path for path in (f"/usr/sbin/{name}",) if Path(path).exists()), None)


@contextlib.contextmanager
def reference(name: str, tmp: Path, zone: str, zone_file: Path, probe: str, prefix: list[str]) -> Iterator[tuple[int, int]]:
    """knotd or nsd serving `zone_file`; yields its UDP port and pid. RuntimeError if it is not installed."""
    binary = program("knotd" if name == "knotd" else "nsd")
    if binary is None:
        raise RuntimeError(f"not installed (apt-get install -y {'knot' if name == 'knotd' else 'nsd'})")
    work = tmp / name
    work.mkdir(exist_ok=True)
    port = free_dns_port()
    template = KNOT_CONF if name == "knotd" else NSD_CONF
    conf = work / f"{name}.conf"
    conf.write_text(template.format(tmp=work, port=port, zone=zone, zone_file=zone_file))
    cmd = [binary, "-c", str(conf)] if name == "knotd" else [binary, "-d", "-c", str(conf)]
    with running([*prefix, *cmd], work / f"{name}.log", lambda: answers(port, probe)) as pid:
        yield port, pid
