"""The benchmark suite (bench/run) at tiny sizes, so it cannot rot: it must run every
configuration it can start and write the table with every column and every figure.
No timing is asserted; the figures themselves are not checked beyond being measured."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["direct", "nginx-tls", "ssh-R", "pagekite", "burrow", "burrow-w2"]
FIGURES = ["h1_rps", "h2_rps", "p50_ms", "p99_ms", "download_mbs", "upload_mbs", "tls_cps", "cpu_us",
           "rss_front_mib", "rss_back_mib"]

pytestmark = pytest.mark.skipif(
    not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()) or not shutil.which("h2load"),
    reason="the bench needs nginx and h2load (apt-get install -y nginx nghttp2-client)",
)


def test_tiny_run_writes_every_column_and_figure(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "suite.py"), "--no-install", "--rounds", "1", "--load-seconds", "1",
         "--mb", "1", "--rate", "50", "--transfer-cap", "5", "--dns-names", "300", "--dns-seconds", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = (out / "results.md").read_text()
    assert table in done.stdout
    header = table.splitlines()[0]
    assert [cell.strip() for cell in header.strip("|").split("|")] == ["figure", "unit", *CONFIGS]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:] if line.startswith("| ")}
    result = json.loads((out / "results.json").read_text())
    assert [figure["key"] for figure in result["figures"]] == FIGURES
    for figure in result["figures"]:
        row = rows[figure["label"].format(rate=50, mb=1)]
        assert row.count("|") == len(CONFIGS) + 3

    for config in ("direct", "nginx-tls", "burrow", "burrow-w2"):  # always started (nginx is required)
        assert config not in result["skipped"], result["skipped"]
        assert result["medians"][config]["h1_rps"] > 0, result["notes"]
    burrow = result["medians"]["burrow"]
    for key in ("h2_rps", "download_mbs", "upload_mbs"):  # measured, or a note says why not (e.g. a loaded machine)
        assert (burrow[key] or 0) > 0 or any(": burrow: " in note for note in result["notes"]), (key, result["notes"])
    assert burrow["rss_front_mib"] > 0 and burrow["rss_back_mib"] > 0
    assert set(result["medians"]) | set(result["skipped"]) == set(CONFIGS)
    # The ratios are printed next to every measured figure of the compared configurations.
    assert "× / " in rows["small GET, HTTP/1.1, 50 conns"]
    # The DNS row: Burrow's queries/s with its ratios to knotd and nsd, or why it was skipped.
    dns = rows["DNS, 300 routed names, UDP A"]
    assert dns.count("|") == len(CONFIGS) + 3
    assert ("knotd" in dns and "nsd" in dns) or "skipped: " in dns, dns
    burrow_cell = dns.split("|")[3 + CONFIGS.index("burrow")]
    assert "knotd" in burrow_cell or "skipped: " in burrow_cell, dns

    # burrow-w2: `--workers 2` unpinned, its server CPU per request, both workers answering,
    # and its ratio to the one-worker burrow under the table.
    workers = result["medians"]["burrow-w2"]
    assert workers["cpu_us"] > 0 and workers["rss_front_mib"] > 0 and workers["tls_cps"] is None
    [spread] = result["workers_spread"]
    assert len(spread["per_worker"]) == 2 and min(spread["per_worker"]) > 0, spread
    h1 = workers["h1_rps"] / burrow["h1_rps"]
    line = next(line for line in table.splitlines() if line.startswith("burrow-w2 column: "))
    assert f"small GET HTTP/1.1 {h1:.3g}× (issue 15's target ≥ 1.7×: {'met' if h1 >= 1.7 else 'not met'})" in line, line


def test_bad_arguments_get_a_clear_error():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "suite.py"), "--configs", "direct,frp"],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )
    assert done.returncode == 2
    assert "unknown --configs frp" in done.stderr and "Traceback" not in done.stderr

def test_transfer_bench_at_one_mib_prints_both_configurations_with_cpu_per_gib(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "transfer_bench.py"), "--mib", "1", "--rounds", "1",
         "--transfer-cap", "20", "--json", str(tmp_path / "transfers.json")],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| ")}
    assert rows["nginx-tls"].count("1.000×") == 2
    result = json.loads((tmp_path / "transfers.json").read_text())
    [burrow] = result["rounds"]["burrow"]
    for direction in ("download", "upload"):
        assert burrow[direction]["mbs"] > 0 and set(burrow[direction]) == {"mbs", "front_s_per_gib", "back_s_per_gib"}


def test_floor_micro_measures_the_floor_beside_nginx_tls_and_burrow():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "floor_micro.py"), "--rounds", "1", "--seconds", "1"],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[2:]}
    assert set(rows) == {"nginx-tls", "burrow", "floor"}, done.stdout
    assert rows["nginx-tls"][:2] == [rows["nginx-tls"][0], "1.000"]
    for name in ("burrow", "floor"):  # req/s, ratio, CPU µs per request of the two tunnel processes
        rate, ratio, cpu = rows[name]
        assert float(rate) > 0 and float(ratio) > 0 and float(cpu) > 0, done.stdout
    bad = subprocess.run([sys.executable, str(REPO / "bench" / "floor_micro.py"), "--before", "/nonexistent"],
                         capture_output=True, text=True, timeout=30, cwd=REPO)
    assert bad.returncode == 2 and "no Burrow source there" in bad.stderr and "Traceback" not in bad.stderr
    none = subprocess.run([sys.executable, str(REPO / "bench" / "floor_micro.py"), "--rounds", "0"],
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert none.returncode == 2 and "--rounds must be at least 1" in none.stderr


def test_each_round_starts_further_along_so_no_configuration_is_always_measured_late(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from suite import round_order

    orders = [round_order(CONFIGS, round_index, 3) for round_index in range(3)]
    assert all(sorted(order) == sorted(CONFIGS) for order in orders)
    for config in CONFIGS:  # three rounds: first, middle and last thirds each once
        assert sorted(order.index(config) // 2 for order in orders) == [0, 1, 2], (config, orders)
    assert round_order(CONFIGS, 0, 1) == CONFIGS and round_order(["burrow"], 2, 3) == ["burrow"]
