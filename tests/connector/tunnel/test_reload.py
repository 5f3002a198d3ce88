"""Reloading the ingress rules: a valid config swaps one reference, an invalid one changes nothing."""

from __future__ import annotations

import trio

from connector.ingress.rules import Ingress
from connector.origins.hello import hello_page
from connector.tunnel.reload import POLL_INTERVAL, Reloader
from connector.tunnel.streams import StreamServer
from shared.config import load_connector_config
from shared.events import RequestHead

V1 = "ingress:\n  - service: http_status:404\n"
V2 = "ingress:\n  - hostname: a.example.test\n    service: hello_world\n  - service: http_status:503\n"
BROKEN = "ingress:\n  - hostname: a.example.test\n    service: hello_world\n"


def reloader_for(path) -> Reloader:
    def build() -> Ingress:
        cfg = load_connector_config(path)
        return Ingress.from_rules(cfg.ingress, cfg.origin_request, source=str(path))

    return Reloader(path, build, StreamServer(build()))


def test_reload_swaps_the_rules(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(V1)
    reloader = reloader_for(path)
    path.write_text(V2)
    assert reloader.reload("test")
    assert [str(rule.service) for rule in reloader.server.ingress.rules] == ["hello_world", "http_status:503"]


def test_an_invalid_config_keeps_the_old_rules(tmp_path, caplog):
    path = tmp_path / "config.yml"
    path.write_text(V1)
    reloader = reloader_for(path)
    before = reloader.server.ingress
    path.write_text(BROKEN)
    assert not reloader.reload("test")
    assert reloader.server.ingress is before
    assert "config.reload_rejected why=test keeping=old error=" in caplog.text
    assert "the last rule must match every request" in caplog.text


async def test_a_changed_file_is_noticed_by_polling(tmp_path, autojump_clock):
    path = tmp_path / "config.yml"
    path.write_text(V1)
    reloader = reloader_for(path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reloader._poll)
        await trio.sleep(POLL_INTERVAL * 1.5)
        assert len(reloader.server.ingress.rules) == 1
        path.write_text(V2)
        await trio.sleep(POLL_INTERVAL * 1.5)
        assert len(reloader.server.ingress.rules) == 2
        nursery.cancel_scope.cancel()


def test_hello_page_text_html_and_head():
    head = RequestHead(b"GET", b"/p?q=1", b"h.example.test", headers=((b"x-probe", b"<i>"),))
    response, body = hello_page(head)
    assert response.header(b"content-type").startswith(b"text/plain")
    assert b"method: GET\npath: /p?q=1\nhost: h.example.test\n" in body and b"  x-probe: <i>" in body
    response, body = hello_page(RequestHead(b"GET", b"/", b"h", headers=((b"accept", b"text/html"),)))
    assert response.header(b"content-type").startswith(b"text/html") and b"<th>accept</th>" in body
    response, body = hello_page(RequestHead(b"HEAD", b"/", b"h"))
    assert (response.has_body, body) == (False, b"") and int(response.header(b"content-length")) > 0
