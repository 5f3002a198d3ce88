"""WebSocket through the tunnel with a real browser: headless Chromium loads a page from
the tunnelled echo origin's own hostname (https://ws.example.test:PORT/page, over the
edge and connector), whose JavaScript opens wss://ws.example.test:PORT/echo, exchanges
1,000 text and 1,000 binary messages (some of 1 MiB) over HTTP/2 (RFC 8441 extended
CONNECT, which Chromium picks itself when the edge announces it), checks every echo, closes with
code 4003 and writes the outcome into the DOM, which the test polls over Chromium's
DevTools protocol (--dump-dom with --virtual-time-budget does not wait for WebSocket
traffic: it dumped the page while still "running"); tests/e2e/browser.py drives Chromium.

Skipped when /usr/bin/chromium or certutil is missing (`make system-deps` installs them)."""

from __future__ import annotations

import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from tests.e2e.browser import chromium, needs_chromium, trusting_home
from tests.e2e.conftest import ZONE
from tests.e2e.tunnels import run_tunnel

HOST = f"ws.{ZONE}"
MESSAGES = 1_000  # of each kind
BROWSER_TIMEOUT = 120  # seconds for the whole page run

pytestmark = needs_chromium

# Every 100th message of each kind is ~1 MiB; the rest are small. Binary payloads come
# from a per-message xorshift generator, so the page can check every byte of the echo.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>running</title></head>
<body><pre id="result">running</pre>
<script>
const N = %(messages)d, MIB = 1024 * 1024;
function report(text) {
  document.getElementById("result").textContent = "RESULT " + text;
  document.title = "RESULT " + text;
}
function payload(i) {
  const size = i %% 100 === 50 ? MIB - (i %% 3) : 1 + (i * 37) %% 2000;
  const bytes = new Uint8Array(size);
  let x = (i + 1) * 2654435761 >>> 0;
  for (let k = 0; k < size; k++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    bytes[k] = x & 255;
  }
  return bytes;
}
function text(i) {
  return i %% 100 === 7 ? ("é€" + (i %% 10)).repeat(Math.floor(MIB / 6)) : "message " + i + " ✓";
}
async function run() {
  const ws = new WebSocket("wss://" + location.host + "/echo");
  ws.binaryType = "arraybuffer";
  const queue = [], waiters = [];
  let closed = null;
  ws.onmessage = (event) => waiters.length ? waiters.shift()(event.data) : queue.push(event.data);
  ws.onclose = (event) => {
    closed = event;
    while (waiters.length) waiters.shift()(null);
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("websocket error before open"));
  });
  const next = () => queue.length ? Promise.resolve(queue.shift())
    : closed ? Promise.resolve(null) : new Promise((resolve) => waiters.push(resolve));
  let texts = 0, binaries = 0, bytes = 0;
  const start = performance.now();
  for (let i = 0; i < N; i++) {
    const t = text(i);
    ws.send(t);
    const echoedText = await next();
    if (echoedText !== t) throw new Error("text " + i + " differs (" + typeof echoedText + ")");
    texts++; bytes += t.length;
    const b = payload(i);
    ws.send(b);
    const echoed = await next();
    if (!(echoed instanceof ArrayBuffer) || echoed.byteLength !== b.length)
      throw new Error("binary " + i + " has the wrong type or length");
    const view = new Uint8Array(echoed);
    for (let k = 0; k < b.length; k++)
      if (view[k] !== b[k]) throw new Error("binary " + i + " differs at byte " + k);
    binaries++; bytes += b.length;
  }
  const elapsed = (performance.now() - start) / 1000;
  const closedEvent = closed || await new Promise((resolve) => {
    ws.onclose = resolve;
    ws.close(4003, "page says bye");
  });
  report("ok texts=" + texts + " binaries=" + binaries + " bytes=" + bytes +
         " seconds=" + elapsed.toFixed(2) + " close=" + closedEvent.code);
}
run().catch((error) => report("error " + error.message));
</script></body></html>
"""


class BrowserEchoOrigin:
    """A `websockets` echo server that also serves PAGE to plain GET /page, and records
    the close code of every WebSocket it served."""

    def __init__(self) -> None:
        self.close_codes: list[int | None] = []
        self.page_requests = 0
        self.server = serve(self.handle, "127.0.0.1", 0, max_size=None, process_request=self.page)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.socket.getsockname()[1]

    def page(self, connection, request):
        if "upgrade" in request.headers.get("Connection", "").lower():
            return None
        if request.path != "/page":
            return connection.respond(404, "not found\n")
        self.page_requests += 1
        response = connection.respond(200, PAGE % {"messages": MESSAGES})
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        response.headers["Cache-Control"] = "no-store"
        return response

    def handle(self, ws) -> None:
        try:
            for message in ws:
                ws.send(message)
        except ConnectionClosed:
            pass
        self.close_codes.append(ws.close_code)


@pytest.fixture(scope="module")
def origin(edge):
    origin = BrowserEchoOrigin()
    run_tunnel(edge, "ws-browser-tunnel", [("ws", f"ws://127.0.0.1:{origin.port}")])
    yield origin
    origin.server.shutdown()


@pytest.fixture
def browser_home(edge, tmp_path):
    return trusting_home(tmp_path / "home", edge.ca)


def run_page(home, url: str) -> str:
    """Open `url` in headless Chromium and poll the page's result element until it holds
    RESULT …, or time out."""
    with chromium(home, url) as page:
        expression = "(document.getElementById('result') || {}).textContent || ''"
        deadline = time.monotonic() + BROWSER_TIMEOUT
        while not (text := page.evaluate(expression)).startswith("RESULT") and time.monotonic() < deadline:
            time.sleep(0.2)
        if not text.startswith("RESULT"):
            text += "\n" + str(page.evaluate("location.href + ' ' + document.documentElement.outerHTML.slice(0, 500)"))
        return text


def test_chromium_exchanges_messages_through_the_tunnel(edge, origin, browser_home):
    before = len(origin.close_codes)
    start = time.monotonic()
    result = run_page(browser_home, f"https://{HOST}:{edge.https_port}/page")
    elapsed = time.monotonic() - start
    print(f"\nchromium: {result} (browser run {elapsed:.1f}s)")
    assert result.startswith("RESULT ok "), result
    assert f"texts={MESSAGES} binaries={MESSAGES} " in result
    assert result.endswith(" close=4003"), result
    assert origin.page_requests >= 1
    # The page came over HTTP/2, whose SETTINGS announce RFC 8441: Chromium opened the
    # WebSocket as an extended CONNECT on that connection, not as an HTTP/1.1 Upgrade.
    assert "http2.websocket client=127.0.0.1" in edge.proc.log()
    deadline = time.monotonic() + 10
    while 4003 not in origin.close_codes[before:] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 4003 in origin.close_codes[before:], origin.close_codes
