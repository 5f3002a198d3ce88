"""Network namespaces for the HA tests: a home network behind NAT, a VPS, and faults between them.

    home (connector + origin)  ──veth──  router (nftables masquerade)  ──veth──  vps (edge, curl)
    198.19.0.2/24                 198.19.0.1 | 198.18.0.2                        198.18.0.1/24

Addresses come only from 198.18.0.0/15 (RFC 2544, benchmarking). The vps has
no route to 198.19.0.0/24 and the router forwards only connections opened from
home, so nothing can reach the home network from outside: the connector dials out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

VPS_IP = "198.18.0.1"
ROUTER_WAN_IP = "198.18.0.2"  # the address the edge sees every home connection come from
ROUTER_LAN_IP = "198.19.0.1"
HOME_IP = "198.19.0.2"


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
class Topology:
    prefix: str

    @property
    def home(self) -> str:
        return f"{self.prefix}-home"

    @property
    def router(self) -> str:
        return f"{self.prefix}-router"

    @property
    def vps(self) -> str:
        return f"{self.prefix}-vps"

    @property
    def names(self) -> list[str]:
        return [self.home, self.router, self.vps]

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
        p = self.prefix
        for ns in self.names:
            sh("ip", "netns", "add", ns)
            self.run(ns, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", f"{p}w0", "netns", self.vps, "type", "veth", "peer", "name", f"{p}w1", "netns", self.router)
        sh("ip", "link", "add", f"{p}l0", "netns", self.home, "type", "veth", "peer", "name", f"{p}l1", "netns", self.router)
        for ns, dev, address in (
            (self.vps, f"{p}w0", f"{VPS_IP}/24"),
            (self.router, f"{p}w1", f"{ROUTER_WAN_IP}/24"),
            (self.router, f"{p}l1", f"{ROUTER_LAN_IP}/24"),
            (self.home, f"{p}l0", f"{HOME_IP}/24"),
        ):
            self.run(ns, "ip", "addr", "add", address, "dev", dev)
            self.run(ns, "ip", "link", "set", dev, "up")
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
