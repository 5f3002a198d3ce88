"""bench/hostnames_bench.py and bench/sessions_bench.py (issue 18) at tiny sizes, so they cannot rot:
every figure is measured, on both registry engines, and every session opens. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg import PG_BIN

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason=f"PostgreSQL is not installed in {PG_BIN}")
def test_hostnames_bench_measures_both_engines_and_every_routing_pass():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "hostnames_bench.py"), "--names", "1000", "--lookups", "2000", "--runs", "1"],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    for engine in ("sqlite", "postgresql"):
        figures = result[engine]
        assert figures["load_s"] > 0 and figures["snapshot_s"] > 0, figures
        for edge in (figures["edge_routes"], figures["edge_empty"]):
            assert edge["start_s"] > 0 and edge["rss_mib"] > 0, edge
    routing = result["routing"]
    for key in ("reference_dict", "hits", "misses", "cached", "hits_1000_routes", "uncached", "uncached_1000_routes"):
        assert routing[f"{key}_per_s"] > 0, key
    assert "routing lookups/s over 2,000 Host values" in done.stdout


def test_hostnames_bench_rejects_an_unknown_engine():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "hostnames_bench.py"), "--engines", "sqlite,mysql"],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )
    assert done.returncode == 2
    assert "unknown --engines mysql" in done.stderr and "Traceback" not in done.stderr


def test_sessions_bench_opens_every_session_from_two_simulator_processes():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sessions_bench.py"), "--sessions", "20", "--tunnels", "4", "--seconds", "1",
         "--processes", "2", "--open-timeout", "120"],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["sessions_open"] == 20 and result["sessions_held_serving"] == 20, result
    assert result["requests_ok"] == "1/1", result
    assert result["edge_rss_mib_idle"] > result["edge_rss_mib_before"] > 0, result
