"""Private-network benchmark: `burrow access socks` against the same traffic straight inside the namespace.

Builds the test suite's private-network lab (tests/e2e/private_lab.py: network
namespaces, addresses in 198.18.0.0/15, nginx and dnsmasq on the private network,
an edge, a warp-routing connector and `burrow access socks` in a client namespace
that reaches only the edge), then measures, in one run:

* TCP MB/s: curl downloads a --size MiB file from nginx, through the SOCKS proxy
  (client namespace) and directly from the connector's namespace (reference); median of --rounds.
* connections/s: for --seconds, --concurrency workers each open a connection, send one
  small GET and read to the close (tests/e2e/socks_client.py http-rate), through the proxy
  and directly.
* UDP DNS queries/s: one query at a time to dnsmasq for --seconds, through one UDP
  ASSOCIATE and directly.

Each figure is reported with its ratio to the direct reference. Needs root (ip netns).
Prints a table, then the figures as JSON on the last line.

    .venv/bin/python bench/socks_bench.py [--size 64] [--rounds 3] [--seconds 5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e import netns  # noqa: E402 - the suite's namespace helpers
from tests.e2e.private_lab import DNS, OFFICE_NET, PRINTER, SOCKS_PORT, WEB, Lab, make_lab  # noqa: E402

SOCKS = f"127.0.0.1:{SOCKS_PORT}"


def download_mb_s(lab: Lab, role: str, via_socks: bool) -> float:
    proxy = ["--socks5-hostname", SOCKS] if via_socks else []
    result = lab.run(role, "curl", "-sS", "--max-time", "120", *proxy, "-o", "/dev/null", "-w", "%{speed_download} %{size_download}",
                     f"http://{WEB}/big", timeout=150)  # fmt: skip
    speed, size = result.stdout.split()
    if int(float(size)) != lab.big_size:
        raise RuntimeError(f"downloaded {size} bytes of {lab.big_size}")
    return float(speed) / 1e6


def client_rate(lab: Lab, role: str, via_socks: bool, *args: str) -> dict:
    result = lab.run(role, sys.executable, "-m", "tests.e2e.socks_client", args[0], SOCKS if via_socks else "direct", *args[1:],
                     env={**lab.env, "PYTHONPATH": str(REPO)}, timeout=120)  # fmt: skip
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="MiB downloaded per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each rate measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="workers of the connections/s measurement")
    args = parser.parse_args()
    reason = netns.netns_permitted()
    if reason is not None:
        sys.exit(f"socks_bench needs network namespaces: {reason}")
    with tempfile.TemporaryDirectory(prefix="socks-bench-") as tmp:
        lab = make_lab(Path(tmp), f"pb{os.getpid() % 100000}")
        try:
            lab.start_edge()
            lab.start_office(args.size)
            home = lab.account("bench")
            lab.burrow("client", home, "tunnel", "create", "office")
            lab.burrow("client", home, "tunnel", "route", "ip", "add", OFFICE_NET, "office")
            lab.run_connector("conn", home, "office", "{enabled: true}")
            lab.socks(home)
            figures = measure(lab, args)
        finally:
            lab.stop()
    print(f"{'':24}{'access socks':>14}{'direct':>12}{'ratio':>8}")
    for name, (socks, direct, unit) in figures.items():
        print(f"{name:24}{socks:>11.1f} {unit:<3}{direct:>9.1f} {unit:<3}{socks / direct:>7.2f}")
    print(json.dumps({name: {"socks": socks, "direct": direct, "ratio": round(socks / direct, 3), "unit": unit}
                      for name, (socks, direct, unit) in figures.items()}))  # fmt: skip


def measure(lab: Lab, args) -> dict[str, tuple[float, float, str]]:
    socks_mb = statistics.median(download_mb_s(lab, "client", True) for _ in range(args.rounds))
    direct_mb = statistics.median(download_mb_s(lab, "conn", False) for _ in range(args.rounds))
    rate = ("http-rate", WEB, "80", "--seconds", str(args.seconds), "--concurrency", str(args.concurrency))
    socks_conns, direct_conns = client_rate(lab, "client", True, *rate), client_rate(lab, "conn", False, *rate)
    for result in (socks_conns, direct_conns):
        if result["failed"]:
            raise RuntimeError(f"connections failed: {result}")
    dns = ("dns-rate", DNS, PRINTER, "--seconds", str(args.seconds))
    socks_dns, direct_dns = client_rate(lab, "client", True, *dns), client_rate(lab, "conn", False, *dns)
    return {
        "tcp_download": (socks_mb, direct_mb, "MB/s"),
        "tcp_connections": (socks_conns["per_second"], direct_conns["per_second"], "/s"),
        "udp_dns_queries": (socks_dns["per_second"], direct_dns["per_second"], "/s"),
    }


if __name__ == "__main__":
    main()
