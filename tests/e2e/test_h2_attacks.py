"""HTTP/2 resource attacks against the real edge, connector and origin, each with a bystander.

For every attack class (bench/h2_attacks.py, run as its own process, reconnecting shortly
after the edge closes a connection) the test measures a normal HTTP/2 client on its own
connection before, during and after the attack, and checks: the bystander's success rate
during the attack is at least 95 % of its baseline and its p99 latency at most 5× the
slower of the two quiet runs (on a shared 2-core machine two quiet runs alone differ by up
to 5×); every attacking connection ends with GOAWAY ENHANCE_YOUR_CALM, the edge having
read at most the attack's budget of frames (the GOAWAY's debug data names it); the edge's
resident memory grows by at most 10 MiB; the fresh connection right after is served.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from h2.errors import ErrorCodes

from tests.e2e.conftest import REPO, ZONE, start_edge
from tests.h2_client import visitor

HOST = f"app.{ZONE}"
HEADER_TIMEOUT = 2.0
REQUESTS = 500  # per bystander run: one stall of the machine delays WORKERS requests at once
WORKERS = 4  # concurrent streams on the bystander's connection
MAX_RSS_GROWTH_MIB = 10
ATTACKER = REPO / "bench" / "h2_attacks.py"
RECONNECT_PAUSE = 0.05  # the attacker's pause before a new connection: an attack per connection, not a handshake flood

# attack -> (parallel attacking connections, the edge's budget named in its GOAWAY,
# seconds the attack lasts at least)
ATTACKS = {
    "rapid-reset": (1, ("rapid reset", "RST_STREAM"), 0),
    "rapid-reset-paced": (1, "rapid reset", 0),
    "priority": (1, "PRIORITY", 0),
    "empty-data": (1, "empty DATA", 0),
    "window-update": (1, "WINDOW_UPDATE", 0),
    "zero-window": (1, "WINDOW_UPDATE", 0),
    "settings": (1, "SETTINGS", 0),
    "ping": (1, "PING", 0),
    "reset": (1, "RST_STREAM", 0),
    "continuation-flood": (1, "header block over", 0),
    "hpack-bomb": (1, "", 0),  # h2's own GOAWAY, without debug data
    "continuation-drip": (20, "header block not complete", HEADER_TIMEOUT + 1.5),
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    edge = start_edge(tmp_path_factory.mktemp("h2-attacks"), serve_args=("--header-timeout", f"{HEADER_TIMEOUT:g}s"))
    yield edge
    for proc in reversed(edge.procs):
        proc.stop()


@dataclass
class Load:
    """What the bystander saw: one latency per request answered 200, and the count asked."""

    asked: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def success(self) -> float:
        return len(self.latencies) / self.asked

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies) or [float("inf")]
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def bystander(edge, requests: int = REQUESTS) -> Load:
    """`requests` GETs through the tunnel, WORKERS at a time, on one fresh HTTP/2 connection."""
    load = Load(asked=requests)
    async with visitor(edge.https_port, edge.ca, HOST) as client:

        async def worker(first: int) -> None:
            for n in range(first, requests, WORKERS):
                started = trio.current_time()
                with trio.move_on_after(10):
                    if (await client.request(f"/bystander/{n}")).status == 200:
                        load.latencies.append(trio.current_time() - started)

        async with trio.open_nursery() as nursery:
            for first in range(WORKERS):
                nursery.start_soon(worker, first)
    return load


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


async def under_attack(edge, attack: str, parallel: int, seconds: float) -> tuple[Load, list[dict], float]:
    """The bystander's run while the attacker process runs (for `seconds` at least); the
    attacker's outcomes and the edge's peak resident memory meanwhile."""
    command = [sys.executable, str(ATTACKER), attack, str(edge.https_port), HOST, str(edge.ca),
               "--parallel", str(parallel), "--pause", str(RECONNECT_PAUSE), "--seconds", "30"]
    peak = rss_mib(edge.proc.pid)
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as attacker:
        try:
            assert json.loads(await trio.to_thread.run_sync(attacker.stdout.readline)) == {"started": True}
            started = trio.current_time()
            await trio.sleep(0.3)  # the attack at full strength
            async with trio.open_nursery() as nursery:

                async def sample() -> None:
                    nonlocal peak
                    while True:
                        peak = max(peak, rss_mib(edge.proc.pid))
                        await trio.sleep(0.02)

                nursery.start_soon(sample)
                load = await bystander(edge)
                await trio.sleep_until(started + seconds)
                nursery.cancel_scope.cancel()
        finally:
            attacker.send_signal(signal.SIGTERM)
            output, _ = await trio.to_thread.run_sync(lambda: attacker.communicate(timeout=30))
    lines = [json.loads(line) for line in output.splitlines()]
    return load, [line for line in lines if "attack" in line], peak


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attack_is_cut_off_while_a_bystander_keeps_its_rate(stack, attack):
    edge = stack.edge
    parallel, budget, seconds = ATTACKS[attack]
    await bystander(edge, 50)  # warm: connections, caches, the tunnel's sessions
    baseline = await bystander(edge)
    before = rss_mib(edge.proc.pid)
    during, outcomes, peak = await under_attack(edge, attack, parallel, seconds)
    after = await bystander(edge)
    quiet_p99 = max(baseline.p99, after.p99)
    ended = [o for o in outcomes if o["ended"] != "stopped"]
    frames = max((o["frames"] for o in ended), default=0)
    print(
        f"\n{attack}: bystander {baseline.success:.0%} ok, p99 {baseline.p99 * 1000:.1f} ms before;"
        f" {during.success:.0%} ok, p99 {during.p99 * 1000:.1f} ms during; {after.success:.0%} ok,"
        f" p99 {after.p99 * 1000:.1f} ms after; {len(outcomes)} attacking connections,"
        f" {len(ended)} ended by the edge after at most {frames} frames written ({ended[0]['debug'] if ended else '-'});"
        f" edge VmRSS {before:.1f} -> peak {peak:.1f} MiB"
    )
    assert during.success >= 0.95 * baseline.success
    assert during.p99 <= 5 * quiet_p99
    assert ended, outcomes
    for outcome in ended:
        assert (outcome["ended"], outcome["error_code"]) == ("goaway", ErrorCodes.ENHANCE_YOUR_CALM), outcome
        assert outcome["debug"].startswith(budget), outcome
    assert peak - before <= MAX_RSS_GROWTH_MIB
    assert after.success == 1
