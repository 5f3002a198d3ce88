"""Issue 7 acceptance 5: a person signs in to an Access-protected hostname in headless Chromium.

The browser visits the hostname, is sent to the edge's login page, signs in, reaches the app (the
connector's hello page, which lists the request headers the origin got), signs out, and is sent to
the login page again; the session cookie is host-only, HttpOnly, Secure, SameSite=Lax, and does not
open another protected hostname. Driven over Chromium's DevTools protocol, trusting the edge's dev
CA through an NSS database (as test_websocket_browser does). Skipped without chromium/certutil."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import BIN, ZONE, wait_until
from tests.e2e.test_websocket_browser import CERTUTIL, CHROMIUM, browser_home  # noqa: F401 (fixture)

APP = f"private.{ZONE}"
SECOND = f"second.{ZONE}"
EMAIL, PASSWORD = "ann@example.test", "correct horse battery"

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and CERTUTIL),
    reason="needs chromium and certutil (libnss3-tools): `make system-deps`",
)


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


class Browser:
    """Headless Chromium driven over the DevTools protocol: navigate, evaluate, read cookies."""

    def __init__(self, home: Path) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("BURROW", "http_", "https_"))}
        env["HOME"] = str(home)
        profile = home / "profile"
        command = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0", f"--host-resolver-rules=MAP *.{ZONE} 127.0.0.1", "about:blank",
        ]
        self._log = open(home / "chromium.log", "wb")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        port_file = profile / "DevToolsActivePort"

        def devtools_port():
            assert self.proc.poll() is None, (home / "chromium.log").read_text()[-3000:]
            return port_file.exists() and port_file.read_text().split("\n")[0].strip()

        port = int(wait_until(devtools_port, 30, "chromium's DevTools port"))

        def page_target():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                return next((t["webSocketDebuggerUrl"] for t in json.load(response) if t["type"] == "page"), None)

        self.target = wait_until(page_target, 30, "the page target")
        self.devtools = None  # the DevTools connection, set by the fixture
        self._ids = iter(range(1, 1_000_000))

    def call(self, method: str, **params) -> dict:
        call_id = next(self._ids)
        self.devtools.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while (reply := json.loads(self.devtools.recv(timeout=30))).get("id") != call_id:
            pass
        assert "error" not in reply, reply
        return reply["result"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, what: str):
        return wait_until(lambda: self.evaluate(expression), 30, what)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def browser(browser_home):  # noqa: F811 (the imported fixture)
    chromium = Browser(browser_home)
    try:
        with connect(chromium.target, max_size=None, open_timeout=10) as chromium.devtools:
            yield chromium
    finally:
        chromium.close()


def at(path: str, text: str) -> str:
    return f"location.pathname === {json.dumps(path)} && document.body && document.body.innerText.includes({json.dumps(text)})"


def test_sign_in_reach_the_app_sign_out(edge, people, browser):
    base = f"https://{APP}:{edge.https_port}"
    browser.goto(base + "/inside?x=1")
    browser.wait_for(at("/cdn-cgi/access/login", f"Sign in to {APP}"), "the login page")
    assert browser.evaluate("new URLSearchParams(location.search).get('redirect_url')") == "/inside?x=1"

    browser.evaluate(
        f"document.getElementById('email').value = {json.dumps(EMAIL)};"
        f"document.getElementById('password').value = {json.dumps(PASSWORD)};"
        "document.querySelector('form').submit(); true"
    )
    browser.wait_for(at("/inside", "Hello from Burrow!"), "the app after signing in")
    page = browser.evaluate("document.body.innerText").lower()
    assert "burrow-access-jwt-assertion" in page  # the origin got the edge's assertion
    assert "burrow_access" not in page  # but not the session cookie
    assert browser.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts

    (cookie,) = [c for c in browser.call("Network.getAllCookies")["cookies"] if c["name"] == "burrow_access"]
    assert cookie["domain"] == APP and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"

    # The session does not open another protected hostname, neither in the browser (host-only
    # cookie) nor when sent there by hand.
    browser.goto(f"https://{SECOND}:{edge.https_port}/")
    browser.wait_for(at("/cdn-cgi/access/login", f"Sign in to {SECOND}"), "the second hostname's login page")
    stolen = edge.curl(SECOND, "/", "-H", f"Cookie: burrow_access={cookie['value']}", "-o", "/dev/null", "-w", "%{http_code}")
    assert stolen.stdout == b"403"
    assert edge.curl(APP, "/", "-H", f"Cookie: burrow_access={cookie['value']}", "-o", "/dev/null", "-w", "%{http_code}").stdout == b"200"

    browser.goto(base + "/cdn-cgi/access/logout")
    browser.wait_for(at("/cdn-cgi/access/logout", "Signed out"), "the logout page")
    assert not [c for c in browser.call("Network.getAllCookies")["cookies"] if c["name"] == "burrow_access"]
    browser.goto(base + "/inside")
    browser.wait_for(at("/cdn-cgi/access/login", "Sign in"), "the login page after signing out")
    logs = "".join(proc.log() for proc in edge.procs)
    assert "access.login host=" in logs and PASSWORD not in logs and cookie["value"] not in logs


def test_wrong_password_and_unknown_email_are_refused_alike(edge, people):
    for email, password in ((EMAIL, "wrong password"), ("eve@example.test", PASSWORD)):
        form = ["--data-urlencode", f"email={email}", "--data-urlencode", f"password={password}"]
        result = edge.curl(APP, "/cdn-cgi/access/login", *form, "-D", "-", "-o", "/dev/null")
        assert result.stdout.startswith(b"HTTP/1.1 401") and b"set-cookie" not in result.stdout.lower()
    no_page = edge.curl(APP, "/", "-H", "Accept: application/json", "-o", "/dev/null", "-w", "%{http_code}")
    assert no_page.stdout == b"403"  # not a browser: no redirect
