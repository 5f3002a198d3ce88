"""Issue 7: `burrow-edge serve --max-streams-per-tunnel N`: once a tunnel carries N requests
at once (a slow origin holds them), the next visitor gets 503 with Retry-After from the edge;
when they finish, requests pass again."""

from __future__ import annotations

import subprocess

from tests.e2e.conftest import ZONE, start_edge, start_origin, wait_until
from tests.e2e.tunnels import run_tunnel

LIMIT = 3
HOST = f"slow.{ZONE}"


def curl_args(edge, path: str, *extra: str) -> list[str]:
    return ["curl", "-sS", "--http1.1", "--cacert", str(edge.ca), "--resolve", f"{HOST}:{edge.https_port}:127.0.0.1", *extra,
            "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", f"https://{HOST}:{edge.https_port}{path}"]


def status(edge, path: str = "/") -> tuple[int, str]:
    result = subprocess.run(curl_args(edge, path), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return int(result.stdout[-3:]), result.stdout[:-3].lower()


def test_streams_per_tunnel_over_the_limit_get_503(tmp_path):
    edge = start_edge(tmp_path, serve_args=("--max-streams-per-tunnel", str(LIMIT)))
    try:
        receipts = tmp_path / "receipts"  # the origin logs each request as it arrives, before its delay
        origin, port = start_origin(tmp_path, {**edge.env, "ORIGIN_RECEIPTS": str(receipts)})
        edge.procs.append(origin)
        run_tunnel(edge, "slowpoke", [("slow", f"http://127.0.0.1:{port}")])
        assert status(edge)[0] == 200
        slow = [
            subprocess.Popen(curl_args(edge, "/?delay=4", "-H", f"Burrow-Request-Id: slow-{i}"), stdout=subprocess.PIPE, text=True)
            for i in range(LIMIT)
        ]
        try:
            wait_until(lambda: receipts.exists() and receipts.read_text().count(" slow-") == LIMIT, 20, "the slow requests")
            code, headers = status(edge)  # the slow ones are held at the origin for 4 s more
            assert code == 503, headers
            assert "retry-after: 1" in headers and "burrow-error: edge" in headers
        finally:
            outputs = [proc.communicate(timeout=30)[0] for proc in slow]
        assert [out[-3:] for out in outputs] == ["200"] * LIMIT  # the ones in flight were not disturbed
        assert status(edge)[0] == 200
        assert "request.busy" not in edge.proc.log()  # refusals are not logged at info
    finally:
        for proc in reversed(edge.procs):
            proc.stop()
