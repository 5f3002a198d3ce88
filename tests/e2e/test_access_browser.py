"""Issue 7 acceptance 5: a person signs in to an Access-protected hostname in headless Chromium.

The browser visits the hostname, is sent to the edge's login page, signs in, reaches the app (the
connector's hello page, which lists the request headers the origin got), signs out, and is sent to
the login page again; the session cookie is host-only, HttpOnly, Secure, SameSite=Lax, and does not
open another protected hostname. Driven over Chromium's DevTools protocol, trusting the edge's dev
CA through an NSS database (tests/e2e/browser.py). Skipped without chromium/certutil."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.browser import chromium, needs_chromium, trusting_home
from tests.e2e.conftest import BIN, ZONE

APP = f"private.{ZONE}"
SECOND = f"second.{ZONE}"
EMAIL, PASSWORD = "ann@example.test", "correct horse battery"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def people(edge):
    env = edge.login("people")
    edge.cli("burrow", "tunnel", "create", "people", env=env)
    lines = ["tunnel: people", "ingress:"]
    for host in (APP, SECOND):
        edge.cli("burrow", "tunnel", "route", "dns", "people", host, env=env)
        lines += [f"  - hostname: {host}", "    service: hello_world"]
    config = Path(env["BURROW_HOME"]) / "config.yml"
    config.write_text("\n".join(lines + ["  - service: http_status:404"]) + "\n")
    add = subprocess.run(
        [str(BIN / "burrow"), "access", "user", "add", EMAIL, "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, timeout=60,
    )
    assert add.returncode == 0, add.stderr
    for host in (APP, SECOND):
        edge.cli("burrow", "access", "policy", "set", host, "--allow-email", EMAIL, env=env)
    proc = edge.start(["burrow", "tunnel", "run", "--config", config, "--ha-connections", 1, "people"], "people", env)
    proc.wait_for_log(r"tunnel\.registered index=")
    return env


@pytest.fixture
def browser(edge, tmp_path):
    with chromium(trusting_home(tmp_path / "home", edge.ca), "about:blank") as page:
        yield page


def at(path: str, text: str) -> str:
    return f"location.pathname === {json.dumps(path)} && document.body && document.body.innerText.includes({json.dumps(text)})"


def test_sign_in_reach_the_app_sign_out(edge, people, browser):
    base = f"https://{APP}:{edge.https_port}"
    browser.navigate(base + "/inside?x=1")
    browser.wait_for(at("/cdn-cgi/access/login", f"Sign in to {APP}"), 30, "the login page")
    assert browser.evaluate("new URLSearchParams(location.search).get('redirect_url')") == "/inside?x=1"

    browser.evaluate(
        f"document.getElementById('email').value = {json.dumps(EMAIL)};"
        f"document.getElementById('password').value = {json.dumps(PASSWORD)};"
        "document.querySelector('form').submit(); true"
    )
    browser.wait_for(at("/inside", "Hello from Burrow!"), 30, "the app after signing in")
    page = browser.evaluate("document.body.innerText").lower()
    assert "burrow-access-jwt-assertion" in page  # the origin got the edge's assertion
    assert "burrow_access" not in page  # but not the session cookie
    assert browser.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts

    (cookie,) = [c for c in browser.call("Network.getAllCookies")["cookies"] if c["name"] == "burrow_access"]
    assert cookie["domain"] == APP and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"

    # The session does not open another protected hostname, neither in the browser (host-only
    # cookie) nor when sent there by hand.
    browser.navigate(f"https://{SECOND}:{edge.https_port}/")
    browser.wait_for(at("/cdn-cgi/access/login", f"Sign in to {SECOND}"), 30, "the second hostname's login page")
    stolen = edge.curl(SECOND, "/", "-H", f"Cookie: burrow_access={cookie['value']}", "-o", "/dev/null", "-w", "%{http_code}")
    assert stolen.stdout == b"403"
    assert edge.curl(APP, "/", "-H", f"Cookie: burrow_access={cookie['value']}", "-o", "/dev/null", "-w", "%{http_code}").stdout == b"200"

    browser.navigate(base + "/cdn-cgi/access/logout")
    browser.wait_for(at("/cdn-cgi/access/logout", "Signed out"), 30, "the logout page")
    assert not [c for c in browser.call("Network.getAllCookies")["cookies"] if c["name"] == "burrow_access"]
    browser.navigate(base + "/inside")
    browser.wait_for(at("/cdn-cgi/access/login", "Sign in"), 30, "the login page after signing out")
    logs = "".join(proc.log() for proc in edge.procs)
    assert "access.login host=" in logs and PASSWORD not in logs and cookie["value"] not in logs


def test_wrong_password_and_unknown_email_are_refused_alike(edge, people):
    for email, password in ((EMAIL, "wrong password"), ("eve@example.test", PASSWORD)):
        form = ["--data-urlencode", f"email={email}", "--data-urlencode", f"password={password}"]
        result = edge.curl(APP, "/cdn-cgi/access/login", *form, "-D", "-", "-o", "/dev/null")
        assert result.stdout.startswith(b"HTTP/1.1 401") and b"set-cookie" not in result.stdout.lower()
    no_page = edge.curl(APP, "/", "-H", "Accept: application/json", "-o", "/dev/null", "-w", "%{http_code}")
    assert no_page.stdout == b"403"  # not a browser: no redirect
