"""bench/public_ports_bench.py at tiny sizes, so it cannot rot: every figure is measured
directly and through the tunnel, with its ratio. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_tiny_run_measures_every_figure_both_ways():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "public_ports_bench.py"), "--mb", "2", "--connections", "40",
         "--datagrams", "500", "--flows", "5", "--cap", "60"],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert [row["unit"] for row in result["rows"]] == ["MiB/s", "conn/s", "datagrams/s"]
    for row in result["rows"]:
        assert row["direct"] > 0 and row["tunnel"] > 0 and row["ratio"] > 0, row
    assert "tunnel/direct" in done.stdout and "UDP datagrams lost: direct" in done.stdout
