"""`hello_world`: a built-in test page showing the request as the connector received it.

Pure: a request head in, a response head and body out; HTML when the visitor
accepts it (a browser), plain text otherwise (curl).
"""

from __future__ import annotations

import html

from shared.events import RequestHead, ResponseHead

TITLE = "Hello from Burrow! This tunnel works."


def hello_page(head: RequestHead) -> tuple[ResponseHead, bytes]:
    """The page for `head`; a HEAD request gets the same headers and no body."""
    lines = [
        ("method", head.method.decode("latin-1")),
        ("path", head.target.decode("latin-1")),
        ("host", head.authority.decode("latin-1")),
    ]
    headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers]
    if b"text/html" in (head.header(b"accept") or b""):
        body, content_type = _html(lines, headers), b"text/html; charset=utf-8"
    else:
        body, content_type = _text(lines, headers), b"text/plain; charset=utf-8"
    has_body = head.method != b"HEAD"
    response_headers = ((b"content-type", content_type), (b"content-length", str(len(body)).encode()))
    return ResponseHead(200, response_headers, has_body=has_body), body if has_body else b""


def _text(lines: list[tuple[str, str]], headers: list[tuple[str, str]]) -> bytes:
    out = [TITLE, ""]
    out += [f"{name}: {value}" for name, value in lines]
    out += ["", "headers:"]
    out += [f"  {name}: {value}" for name, value in headers]
    return ("\n".join(out) + "\n").encode()


def _html(lines: list[tuple[str, str]], headers: list[tuple[str, str]]) -> bytes:
    def rows(items: list[tuple[str, str]]) -> str:
        return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in items)

    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>Burrow</title></head><body>"
        f"<h1>{html.escape(TITLE)}</h1><table>{rows(lines)}</table>"
        f"<h2>Request headers</h2><table>{rows(headers)}</table></body></html>\n"
    )
    return page.encode()
