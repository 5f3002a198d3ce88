"""Headless Chromium driven over its DevTools protocol, for e2e tests that need a real browser.

Chromium trusts the edge's dev CA through an NSS database in a temporary $HOME
(certutil); no certificate errors are ignored. Hostnames in the test zone resolve to
loopback. Tests using it should carry `needs_chromium`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import ZONE, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CERTUTIL = shutil.which("certutil")
COMMAND_TIMEOUT = 10  # seconds for one DevTools reply

needs_chromium = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and CERTUTIL),
    reason="needs chromium and certutil (libnss3-tools): `make system-deps`",
)


def trusting_home(home: Path, ca: Path) -> Path:
    """A $HOME whose NSS database trusts `ca` (and nothing else of ours)."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run([CERTUTIL, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, capture_output=True)
    subprocess.run(
        [CERTUTIL, "-d", f"sql:{nssdb}", "-A", "-n", "burrow-dev-ca", "-t", "C,,", "-i", str(ca)],
        check=True, capture_output=True,
    )
    return home


class Page:
    """The DevTools session of Chromium's first page target."""

    def __init__(self, devtools) -> None:
        self._devtools = devtools
        self._ids = iter(range(1, 1_000_000))

    def call(self, method: str, **params) -> dict:
        call_id = next(self._ids)
        self._devtools.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while (reply := json.loads(self._devtools.recv(timeout=COMMAND_TIMEOUT))).get("id") != call_id:
            pass
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable results)."""
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True).get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float, what: str):
        """Poll `expression` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if value := self.evaluate(expression):
                    return value
            except AssertionError:  # the page is navigating: no context to evaluate in
                pass
            time.sleep(0.2)
        html = self.evaluate("location.href + ' ' + document.documentElement.outerHTML.slice(0, 2000)")
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; page: {html}")

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def chromium(home: Path, url: str):
    """Headless Chromium (profile and log under `home`) showing `url`; yields its `Page`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("BURROW", "http_", "https_"))}
    env["HOME"] = str(home)
    profile = home / "profile"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0", f"--host-resolver-rules=MAP *.{ZONE} 127.0.0.1, MAP {ZONE} 127.0.0.1",
        "--window-size=1200,900", url,
    ]
    with open(home / "chromium.log", "wb") as log:
        browser = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            port_file = profile / "DevToolsActivePort"

            def devtools_port():
                assert browser.poll() is None, (home / "chromium.log").read_text()[-3000:]
                return port_file.exists() and port_file.read_text().split("\n")[0].strip()

            port = int(wait_until(devtools_port, 30, "chromium's DevTools port"))

            def page_target():
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                    targets = json.load(response)
                return next((t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page"), None)

            with connect(wait_until(page_target, 30, "the page target"), max_size=None, open_timeout=10) as devtools:
                yield Page(devtools)
        finally:
            browser.terminate()
            try:
                browser.wait(timeout=15)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
