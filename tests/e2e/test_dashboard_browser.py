"""The web dashboard in headless Chromium, against a real edge, connector and origin:
log in with the account token, see the tunnel's 4 live connections, add a route in the
page and see it answer through the edge (curl), see the request chart update after
traffic without reloading, then disconnect the connector and watch it come back.
Screenshots are saved under the test's tmp_path (their paths are printed)."""

from __future__ import annotations

import json
import time

from tests.e2e.browser import chromium, needs_chromium, trusting_home
from tests.e2e.conftest import ZONE, start_origin

pytestmark = needs_chromium

TUNNEL = "dash-tunnel"
ROUTED = f"shop.{ZONE}"  # routed from the CLI before the browser starts
ADDED = f"added.{ZONE}"  # in the connector's ingress, routed through the dashboard
OK_REQUESTS, ERROR_REQUESTS = 7, 3
LIVE_TIMEOUT = 30  # seconds for the page's periodic refresh to show a change


def setup_tunnel(edge) -> str:
    """Account `dash` with a running 4-connection tunnel whose ingress already names ADDED; its token."""
    token = edge.cli("burrow-edge", "account", "create", "dash", "--home", edge.home).stdout.splitlines()[-1]
    env = edge.connector_env("conn-dash")
    edge.cli("burrow", "tunnel", "login", edge.url, "--token", token, "--ca-file", edge.ca, env=env)
    edge.cli("burrow", "tunnel", "create", TUNNEL, env=env)
    edge.cli("burrow", "tunnel", "route", "dns", TUNNEL, ROUTED, env=env)
    origin, origin_port = start_origin(edge.tmp, env)
    edge.procs.append(origin)
    config = edge.tmp / "conn-dash" / "config.yml"
    config.write_text(
        f"tunnel: {TUNNEL}\ningress:\n"
        + "".join(f"  - hostname: {host}\n    service: http://127.0.0.1:{origin_port}\n" for host in (ROUTED, ADDED))
        + "  - service: http_status:404\n"
    )
    connector = edge.start(["burrow", "tunnel", "run", "--config", config, TUNNEL], "dash-connector", env)
    connector.wait_for_log(r"tunnel\.registered index=", count=4)
    return token


def connections(page) -> str:
    return page.evaluate(
        f"(document.querySelector('[data-tunnel=\"{TUNNEL}\"]') || {{dataset: {{}}}}).dataset.connections || ''"
    )


def test_dashboard_in_chromium(edge, tmp_path):
    token = setup_tunnel(edge)
    home = trusting_home(tmp_path / "home", edge.ca)
    shots = []
    with chromium(home, f"https://{ZONE}:{edge.https_port}/dashboard/") as page:
        # Not logged in: the login form.
        page.wait_for("document.getElementById('token') !== null", 30, "the login form")
        assert page.evaluate("location.pathname") == "/dashboard/login"
        shots.append(page.screenshot(tmp_path / "1-login.png"))
        page.evaluate(
            f"document.getElementById('token').value = {json.dumps(token)}; document.forms[0].submit(); true"
        )
        page.wait_for(f"document.querySelector('[data-tunnel=\"{TUNNEL}\"]') !== null", 30, "the tunnel list")
        assert page.evaluate("document.cookie") == ""  # HttpOnly: not readable by scripts
        assert connections(page) == "4"
        assert page.evaluate("document.querySelectorAll('#tunnels tr.session').length") == 4
        shots.append(page.screenshot(tmp_path / "2-tunnel.png"))

        # Add a route in the page; the edge serves it at once.
        assert b"no tunnel serves" in edge.curl(ADDED, "/").stdout
        page.evaluate(
            f"document.querySelector('#add-route [name=hostname]').value = {json.dumps(ADDED)};"
            "document.getElementById('add-route').submit(); true"
        )
        page.wait_for(f"document.body.innerText.includes('Added CNAME {ADDED}')", 30, "the route to be added")
        assert page.evaluate(f"document.querySelector('tr[data-hostname=\"{ADDED}\"]') !== null")
        answer = edge.curl(ADDED, "/hello", "-w", "\n%{http_code}")
        assert answer.stdout.endswith(b"\n200"), answer
        assert json.loads(answer.stdout.rsplit(b"\n", 1)[0])["target"] == "/hello"
        shots.append(page.screenshot(tmp_path / "3-route-added.png"))

        # Traffic: the chart's counts follow without a reload (the page re-fetches its live part).
        for i in range(OK_REQUESTS - 1):
            assert edge.curl(ADDED, f"/r{i}", "-o", "/dev/null", "-w", "%{http_code}").stdout == b"200"
        for _ in range(ERROR_REQUESTS):
            assert edge.curl(ADDED, "/?status=503", "-o", "/dev/null", "-w", "%{http_code}").stdout == b"503"
        chart = f"document.querySelector('figure[data-host=\"{ADDED}\"]')"
        page.wait_for(
            f"{chart} && {chart}.dataset.requests === '{OK_REQUESTS + ERROR_REQUESTS}'", LIVE_TIMEOUT,
            "the chart to count the requests",
        )
        assert page.evaluate(f"{chart}.dataset.errors") == str(ERROR_REQUESTS)
        assert page.evaluate(f"{chart}.querySelectorAll('rect.req').length") >= 1
        assert page.evaluate(f"{chart}.querySelectorAll('rect.err').length") >= 1
        shots.append(page.screenshot(tmp_path / "4-traffic.png"))

        # Disconnect the connector from the page: its sessions close, it dials again.
        page.evaluate(
            "document.querySelector('form[action=\"/dashboard/connectors/disconnect\"]').submit(); true"
        )
        page.wait_for("document.body.innerText.includes('Closed 4 session(s)')", 30, "the disconnect")
        deadline = time.monotonic() + LIVE_TIMEOUT
        while connections(page) != "4" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert connections(page) == "4", "the connector did not come back"
        shots.append(page.screenshot(tmp_path / "5-reconnected.png"))

        # Log out: the dashboard asks for the token again.
        page.evaluate("document.querySelector('form[action=\"/dashboard/logout\"]').submit(); true")
        page.wait_for("location.pathname === '/dashboard/login'", 30, "the logout")
    for shot in shots:
        assert shot.stat().st_size > 1000
        print(f"\nscreenshot: {shot}")
