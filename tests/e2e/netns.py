"""Network namespaces for end-to-end tests.

`Topology` (the HA tests): a home network behind NAT, a VPS, and faults between them.

    home (connector + origin)  ──veth──  router (nftables masquerade)  ──veth──  vps (edge, curl)
    198.19.0.2/24                 198.19.0.1 | 198.18.0.2                        198.18.0.1/24

The vps has no route to 198.19.0.0/24 and the router forwards only connections
opened from home, so nothing can reach the home network from outside: the connector dials out.

`TwoLinks` (multi-homed DNS): an edge with an address on each of two links.

    first   ──veth──  edge  ──veth──  second (routes FIRST_EDGE via SECOND_EDGE)
    .2.2 / :2::2   .2.1 / :2::1 | .3.1 / :3::1   .3.2 / :3::2     (198.18.x.y / 2001:db8:x::y)

Addresses come only from 198.18.0.0/15 (RFC 2544, benchmarking) and, for IPv6,
2001:db8::/32 (documentation), and only inside these namespaces.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import ClassVar

VPS_IP = "198.18.0.1"
ROUTER_WAN_IP = "198.18.0.2"  # the address the edge sees every home connection come from
ROUTER_LAN_IP = "198.19.0.1"
HOME_IP = "198.19.0.2"

FIRST_EDGE, FIRST_PEER = ("198.18.2.1", "2001:db8:2::1"), ("198.18.2.2", "2001:db8:2::2")
SECOND_EDGE, SECOND_PEER = ("198.18.3.1", "2001:db8:3::1"), ("198.18.3.2", "2001:db8:3::2")


def sh(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def netns_permitted() -> str | None:
    """None if `ip netns add` works here, else the reason it does not."""
    name = f"bwprobe{os.getpid()}"
    try:
        result = sh("ip", "netns", "add", name, check=False)
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` is not available: {exc}"
    if result.returncode != 0:
        return f"`ip netns add` is not permitted here: {result.stderr.strip()}"
    sh("ip", "netns", "del", name, check=False)
    return None


@dataclass
class Namespaces:
    """The namespaces `<prefix>-<role>` for each of `ROLES`; `create()` adds them, `destroy()` removes them."""

    prefix: str
    ROLES: ClassVar[tuple[str, ...]] = ()

    def name(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    @property
    def names(self) -> list[str]:
        return [self.name(role) for role in self.ROLES]

    def exec(self, ns: str, *args: str) -> list[str]:
        """argv running `args` inside namespace `ns` (`ip netns exec` execs, so the pid is the program's)."""
        return ["ip", "netns", "exec", ns, *args]

    def run(self, ns: str, *args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
        return sh(*self.exec(ns, *args), check=check, timeout=timeout)

    def nft(self, ns: str, script: str) -> None:
        result = subprocess.run(self.exec(ns, "nft", "-f", "-"), input=script, capture_output=True, text=True, timeout=10)
        if result.returncode != 0:
            raise RuntimeError(f"nft in {ns} failed: {result.stderr.strip()}\n{script}")

    def create(self) -> None:
        for ns in self.names:
            sh("ip", "netns", "add", ns)
            self.run(ns, "ip", "link", "set", "lo", "up")

    def link(self, ends: tuple[tuple[str, str, tuple[str, ...]], tuple[str, str, tuple[str, ...]]]) -> None:
        """A veth pair between two namespaces: each end is (namespace, device, addresses with prefix length)."""
        (ns_a, dev_a, _), (ns_b, dev_b, _) = ends
        sh("ip", "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b)
        for ns, dev, addresses in ends:
            for address in addresses:  # nodad: IPv6 addresses usable at once, not after duplicate detection
                self.run(ns, "ip", "addr", "add", address, "dev", dev, *(["nodad"] if ":" in address else []))
            self.run(ns, "ip", "link", "set", dev, "up")

    def destroy(self) -> None:
        """Kill whatever this test process started that still runs inside the namespaces, then delete them."""
        for ns in self.names:
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                if pid.isdigit() and _descends_from_us(int(pid)):
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        for ns in self.names:
            sh("ip", "netns", "del", ns, check=False)


class Topology(Namespaces):
    ROLES = ("home", "router", "vps")

    @property
    def home(self) -> str:
        return self.name("home")

    @property
    def router(self) -> str:
        return self.name("router")

    @property
    def vps(self) -> str:
        return self.name("vps")

    def create(self) -> None:
        super().create()
        p = self.prefix
        self.link(((self.vps, f"{p}w0", (f"{VPS_IP}/24",)), (self.router, f"{p}w1", (f"{ROUTER_WAN_IP}/24",))))
        self.link(((self.home, f"{p}l0", (f"{HOME_IP}/24",)), (self.router, f"{p}l1", (f"{ROUTER_LAN_IP}/24",))))
        self.run(self.home, "ip", "route", "add", "default", "via", ROUTER_LAN_IP)
        self.run(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.nft(self.router, f"""
table ip burrow_nat {{
    chain postrouting {{ type nat hook postrouting priority srcnat; oifname "{p}w1" masquerade; }}
}}
table inet burrow_filter {{
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "{p}l1" oifname "{p}w1" accept
    }}
}}
""")

    # Faults -----------------------------------------------------------------------

    def blackhole(self, on: bool) -> None:
        """Silently drop everything the router forwards (no RST, no ICMP): a dead uplink."""
        if on:
            self.nft(self.router, """
table inet burrow_blackhole {
    chain forward { type filter hook forward priority -10; policy drop; }
}
""")
        else:
            self.run(self.router, "nft", "delete", "table", "inet", "burrow_blackhole")

    def tunnel_ports(self, edge_port: int) -> list[int]:
        """Local ports of the connector's established tunnel connections, seen from home."""
        out = self.run(self.home, "ss", "-Htn", "state", "established", "dst", f"{VPS_IP}:{edge_port}").stdout
        return sorted(int(line.split()[2].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip())

    def kill_socket(self, local_port: int, edge_port: int) -> None:
        """`ss -K` one tunnel socket in home: the connector sees ECONNABORTED, the edge an RST."""
        self.run(self.home, "ss", "-K", "-tn", "dst", f"{VPS_IP}:{edge_port}", "sport", "=", f":{local_port}")


class TwoLinks(Namespaces):
    """An edge on two links; `second` reaches FIRST_EDGE through its own link, so a reply
    from FIRST_EDGE leaves the edge on the second link (see the module's picture)."""

    ROLES = ("first", "edge", "second")

    def create(self) -> None:
        super().create()
        p, edge = self.prefix, self.name("edge")
        for role, dev, (edge_v4, edge_v6), (peer_v4, peer_v6) in (
            ("first", "a", FIRST_EDGE, FIRST_PEER), ("second", "b", SECOND_EDGE, SECOND_PEER),
        ):
            self.link(((edge, f"{p}{dev}0", (f"{edge_v4}/24", f"{edge_v6}/64")),
                       (self.name(role), f"{p}{dev}1", (f"{peer_v4}/24", f"{peer_v6}/64"))))
        for address, via in zip(FIRST_EDGE, SECOND_EDGE):
            self.run(self.name("second"), "ip", "route", "add", address, "via", via)


# Load -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    started: float
    ended: float
    status: int  # 0: no HTTP response
    curl_exit: int


class Load:
    """`workers` curls in a loop from a namespace until `stop()` or `duration`; bounded in time and count."""

    def __init__(self, argv_prefix: list[str], curl_args: list[str], url: str, *, workers: int = 4,
                 duration: float = 20.0, max_time: float = 10.0, max_requests: int = 2000) -> None:
        self.argv = [*argv_prefix, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                     "--max-time", str(max_time), *curl_args, url]
        self.max_time = max_time
        self.results: list[Result] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + duration
        self._max_requests = max_requests
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(workers)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _worker(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            with self._lock:
                if len(self.results) >= self._max_requests:
                    return
            started = time.monotonic()
            proc = subprocess.run(self.argv, capture_output=True, text=True, timeout=self.max_time + 10)
            status = int(proc.stdout.strip() or 0) if proc.stdout.strip().isdigit() else 0
            with self._lock:
                self.results.append(Result(started, time.monotonic(), status, proc.returncode))

    def stop(self) -> list[Result]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.max_time + 15)
        return sorted(self.results, key=lambda r: r.started)

    def count(self) -> int:
        with self._lock:
            return len(self.results)


def _descends_from_us(pid: int) -> bool:
    """True if `pid` is a descendant of this process: never kill another test's processes."""
    while pid > 1:
        if pid == os.getpid():
            return True
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent pid
    return False
