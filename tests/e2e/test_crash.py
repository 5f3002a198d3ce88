"""kill -9 of the edge in the middle of a burst of API writes: nothing acknowledged is lost, nothing is torn."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

from tests.e2e.conftest import REPO, START_TIMEOUT, Proc, start_edge, wait_until

BURST_CALLS = 3000  # bounded; far more than fit before the kill


def test_kill_9_during_api_burst(tmp_path):
    edge = start_edge(tmp_path)
    try:
        token = edge.cli("burrow-edge", "account", "create", "crash", "--home", edge.home).stdout.splitlines()[-1]
        acks = tmp_path / "acks.jsonl"
        burst = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.burst", edge.url, token, str(edge.ca), str(acks), str(BURST_CALLS)],
            cwd=REPO, stderr=subprocess.PIPE, text=True,
        )
        wait_until(lambda: acks.exists() and acks.stat().st_size > 0, START_TIMEOUT, "the first acknowledged call")
        time.sleep(random.uniform(0.1, 0.8))
        assert burst.poll() is None, "the burst ended before the kill"
        os.kill(edge.proc.pid, signal.SIGKILL)
        edge.proc.popen.wait()
        assert burst.wait(timeout=30) == 0, burst.stderr.read()
        logged = [json.loads(line) for line in acks.read_text().splitlines() if line.endswith("}")]
        acked = [entry for entry in logged if "answer" in entry]
        assert len(acked) >= 1
        unacknowledged = logged[-1] if "sent" in logged[-1] else None  # may or may not have landed

        (edge.home / "listen.json").unlink()
        restarted = Proc([edge.proc.popen.args[0], "serve", "--home", edge.home], tmp_path / "edge2.log", edge.env)
        edge.procs.append(restarted)
        wait_until(lambda: (edge.home / "listen.json").exists(), START_TIMEOUT, "the restarted edge")

        with sqlite3.connect(edge.home / "registry.db", timeout=10) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            orphans = db.execute(
                "SELECT count(*) FROM records r LEFT JOIN tunnels t ON t.id = r.tunnel_id "
                "WHERE t.id IS NULL OR t.deleted_at IS NOT NULL"
            ).fetchone()[0]
            assert orphans == 0
            assert db.execute(
                "SELECT count(*) FROM connections c LEFT JOIN tunnels t ON t.id = c.tunnel_id "
                "WHERE t.id IS NULL OR t.deleted_at IS NOT NULL"
            ).fetchone()[0] == 0
            assert db.execute("SELECT count(*) FROM tunnels WHERE secret_hash IS NULL OR length(secret_hash) != 64").fetchone()[0] == 0
            tunnels = {row[0]: row[1:] for row in db.execute("SELECT id, name, deleted_at FROM tunnels")}
            records = {row[0]: row[1] for row in db.execute("SELECT hostname, tunnel_id FROM records")}

        deleted = {a["answer"]["id"] for a in acked if a["op"] == "delete"}
        maybe_deleted = unacknowledged["name"] if unacknowledged is not None and unacknowledged["op"] == "delete" else None
        for ack in acked:
            answer = ack["answer"]
            if ack["op"] == "create":
                assert answer["id"] in tunnels, ack
                if answer["name"] != maybe_deleted:
                    assert (tunnels[answer["id"]][1] is not None) == (answer["id"] in deleted), ack
            elif ack["op"] == "route" and answer["tunnel_id"] not in deleted and ack["name"] != maybe_deleted:
                assert records.get(answer["hostname"]) == answer["tunnel_id"], ack
            elif ack["op"] == "delete":
                assert tunnels[answer["id"]][1] is not None, ack
    finally:
        for proc in reversed(edge.procs):
            proc.stop()
