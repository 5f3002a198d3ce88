"""Issue 16 acceptance 6: origin pools with real origin processes behind a real edge and
connector. One of two origins killed under 20 requests/s: no failed GET after the health
check's detection window (interval × unhealthyThreshold); restarted, it rejoins; and
least_requests sends a slow/fast pair's requests where round_robin would split them. The edge's
dashboard (and `burrow tunnel info`) shows a killed origin unhealthy, then healthy again after its restart."""

from __future__ import annotations

import json
import re
import signal
import ssl
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from tests.e2e.browser import chromium, needs_chromium, trusting_home
from tests.e2e.conftest import REPO, ZONE, Proc, free_port, wait_until
from tests.e2e.tunnels import run_tunnel

INTERVAL, UNHEALTHY, HEALTHY = 0.5, 2, 2
WINDOW = INTERVAL * UNHEALTHY + 0.5  # + the check's timeout, and a check already on its way
RATE, DURATION = 20, 12.0  # requests/s for the kill-and-restart run, and its length in seconds
SLOW_DELAY = 0.3


@dataclass
class Origin:
    name: str
    port: int
    env: dict
    tmp: object
    proc: Proc | None = None

    def start(self) -> None:
        port_file = self.tmp / f"{self.name}.port"
        port_file.unlink(missing_ok=True)
        self.proc = Proc([sys.executable, "-m", "tests.e2e.origin", str(port_file)], self.tmp / f"{self.name}.log", self.env, cwd=REPO)
        wait_until(port_file.exists, 20, f"origin {self.name} to listen")

    def kill(self) -> None:
        self.proc.popen.send_signal(signal.SIGKILL)
        self.proc.popen.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def origin(edge, tmp, name: str, delay: float = 0) -> Origin:
    port = free_port()
    env = {**edge.env, "ORIGIN_PORT": str(port), "ORIGIN_NAME": name, "ORIGIN_DELAY": str(delay)}
    started = Origin(name, port, env, tmp)
    started.start()
    return started


@pytest.fixture(scope="module")
def pools(edge, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pools")
    a, b, slow, fast = (origin(edge, tmp, name, SLOW_DELAY if name == "slow" else 0) for name in ("a", "b", "slow", "fast"))
    metrics_port = free_port()
    top = f"""pools:
  ab:
    origins: [{a.url}, {b.url}]
    healthCheck: {{path: /health, interval: {INTERVAL}s, timeout: 400ms, healthyThreshold: {HEALTHY}, unhealthyThreshold: {UNHEALTHY}}}
  least:
    origins: [{slow.url}, {fast.url}]
    policy: least_requests
  turns:
    origins: [{slow.url}, {fast.url}]"""
    connector = run_tunnel(
        edge, "pools", [("ab", "pool:ab"), ("least", "pool:least"), ("turns", "pool:turns")],
        top=top, args=("--metrics", f"127.0.0.1:{metrics_port}"),
    )
    yield {"a": a, "b": b, "slow": slow, "fast": fast, "metrics": metrics_port, "connector": connector}
    for started in (a, b, slow, fast):
        started.proc.stop()


def client(edge, label: str) -> tuple[httpx.Client, str, dict]:
    host = f"{label}.{ZONE}"
    context = ssl.create_default_context(cafile=str(edge.ca))
    http = httpx.Client(verify=context, timeout=10)
    return http, f"https://127.0.0.1:{edge.https_port}/", {"headers": {"Host": host}, "extensions": {"sni_hostname": host}}


def origin_of(response: httpx.Response) -> str:
    return response.headers.get("x-origin", "") if response.status_code == 200 else f"failed {response.status_code}"


def metric(port: int, name: str, pool: str, origin: str) -> float | None:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(f'{name}{{origin="{origin}",pool="{pool}"}} '):
            return float(line.split()[-1])
    return None


def test_a_killed_origin_leaves_the_rotation_and_rejoins_after_restart(edge, pools):
    a, port = pools["a"], pools["metrics"]
    http, url, options = client(edge, "ab")
    results: list[tuple[float, str]] = []
    events: dict[str, float] = {}
    started = time.monotonic()

    def chaos() -> None:
        time.sleep(3)
        a.kill()
        events["killed"] = time.monotonic() - started
        wait_until(lambda: metric(port, "burrow_connector_pool_origin_healthy", "ab", a.url) == 0, 10, "a out of rotation")
        events["out"] = time.monotonic() - started
        time.sleep(2)
        a.start()
        events["restarted"] = time.monotonic() - started
        wait_until(lambda: metric(port, "burrow_connector_pool_origin_healthy", "ab", a.url) == 1, 10, "a back in rotation")
        events["back"] = time.monotonic() - started

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    with http:
        for index in range(int(RATE * DURATION)):  # at most RATE × DURATION requests, paced
            time.sleep(max(0.0, started + index / RATE - time.monotonic()))
            try:
                seen = origin_of(http.get(url, **options))
            except httpx.HTTPError as exc:
                seen = f"failed {type(exc).__name__}"
            results.append((time.monotonic() - started, seen))
    thread.join(timeout=20)
    assert {"killed", "out", "restarted", "back"} <= events.keys(), events
    assert events["out"] - events["killed"] <= WINDOW + 1.0, events  # the metric is polled: a little slack
    failed_late = [(t, seen) for t, seen in results if seen.startswith("failed") and t > events["killed"] + WINDOW]
    failed_early = [(t, seen) for t, seen in results if seen.startswith("failed") and t <= events["killed"] + WINDOW]
    print(f"\npools: {len(results)} GETs, {len(failed_early)} failed within the detection window, events {events}")
    assert failed_late == []
    during = Counter(seen for t, seen in results if events["killed"] + WINDOW < t < events["restarted"])
    assert set(during) == {"b"}, during
    after = Counter(seen for t, seen in results if t > events["back"] + 0.5)
    assert after["a"] > 0 and after["b"] > 0, after  # rejoined: round robin again
    retries = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'burrow_connector_pool_retries_total{pool="ab"}' in retries


def spread(edge, label: str, count: int = 40, workers: int = 8) -> Counter:
    http, url, options = client(edge, label)
    with http, ThreadPoolExecutor(workers) as pool:
        return Counter(pool.map(lambda _: origin_of(http.get(url, **options)), range(count)))


def test_least_requests_sends_most_to_the_fast_origin(edge, pools):
    least, turns = spread(edge, "least"), spread(edge, "turns")
    print(f"\nleast_requests {dict(least)}; round_robin {dict(turns)}")
    assert least["fast"] + least["slow"] == 40 and least["fast"] >= 2 * least["slow"], least
    assert turns == {"fast": 20, "slow": 20}, turns


SNI = {"sni_hostname": ZONE}


class Dashboard:
    """The edge's dashboard, logged in as the pools tunnel's account (httpx, like a browser without script)."""

    def __init__(self, edge) -> None:
        context = ssl.create_default_context(cafile=str(edge.ca))
        self.http = httpx.Client(
            verify=context, timeout=10, base_url=f"https://127.0.0.1:{edge.https_port}",
            headers={"Host": ZONE},
        )
        answer = self.http.post("/dashboard/login", data={"token": edge.tokens["pools"]}, extensions=SNI)
        assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/", answer.text

    def origins(self) -> dict[tuple[str, str], str]:
        """(pool, origin URL) → data-healthy of each row of the live fragment's pools table."""
        html = self.http.get("/dashboard/live", extensions=SNI).text
        rows = re.findall(r'<tr class="pool-origin" data-pool="([^"]+)" data-origin="([^"]+)" data-healthy="(\w+)">', html)
        return {(pool, origin): healthy for pool, origin, healthy in rows}


def test_the_dashboard_shows_a_killed_origin_unhealthy_then_healthy_again(edge, pools):
    b = pools["b"]
    dashboard = Dashboard(edge)
    try:
        shown = dashboard.origins()
        assert shown[("ab", pools["a"].url)] == shown[("ab", b.url)] == "true", shown
        assert ("least", pools["slow"].url) in shown and ("turns", pools["fast"].url) in shown, shown
        b.kill()
        killed = time.monotonic()
        wait_until(lambda: dashboard.origins()[("ab", b.url)] == "false", 10, "the dashboard to show b unhealthy")
        out = time.monotonic() - killed
        info = edge.cli("burrow", "tunnel", "info", "pools", env=edge.connector_env("conn-pools")).stdout  # the admin API
        b_row = next(line.split() for line in info.splitlines() if f" {b.url} " in line and " ab " in line)
        assert b_row[4] == "UNHEALTHY" and b_row[7] == "failed", info
        b.start()
        restarted = time.monotonic()
        wait_until(lambda: dashboard.origins()[("ab", b.url)] == "true", 10, "the dashboard to show b healthy again")
        back = time.monotonic() - restarted
        page = dashboard.http.get("/dashboard/", extensions=SNI).text
    finally:
        dashboard.http.close()
    print(f"\ndashboard: b shown unhealthy {out:.2f} s after the kill, healthy {back:.2f} s after the restart")
    assert out <= WINDOW + 1.0  # polled: a little slack
    assert back <= INTERVAL * HEALTHY + 1.5  # the origin's start, then healthyThreshold passes
    assert 'class="pool-origin"' in page and "(no health check)" in page and "passed at" in page


@needs_chromium
def test_the_dashboard_in_chromium_follows_an_origin_without_reloading(edge, pools, tmp_path):
    a = pools["a"]
    row = f"document.querySelector('tr.pool-origin[data-pool=\"ab\"][data-origin=\"{a.url}\"]')"
    with chromium(trusting_home(tmp_path / "home", edge.ca), f"https://{ZONE}:{edge.https_port}/dashboard/") as page:
        page.wait_for("document.getElementById('token') !== null", 30, "the login form")
        page.evaluate(f"document.getElementById('token').value = {json.dumps(edge.tokens['pools'])}; document.forms[0].submit(); true")
        page.wait_for(f"{row} !== null && {row}.dataset.healthy === 'true'", 30, "a's row, healthy")
        a.kill()
        page.wait_for(f"{row}.dataset.healthy === 'false'", 15, "a's row to turn unhealthy (the page refreshes every 3 s)")
        shot = page.screenshot(tmp_path / "pool-unhealthy.png")
        assert "unhealthy" in page.evaluate(f"{row}.innerText")
        a.start()
        page.wait_for(f"{row}.dataset.healthy === 'true'", 15, "a's row to turn healthy again")
    assert shot.stat().st_size > 1000
    print(f"\nscreenshot: {shot}")


def test_connector_survived(pools):
    assert pools["connector"].alive() and "Traceback" not in pools["connector"].log()
