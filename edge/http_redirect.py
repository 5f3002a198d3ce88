"""The plain-HTTP listener (`http-listen`, usually :80): ACME HTTP-01 answers, and a
308 redirect to HTTPS for everything else. One request per connection."""

from __future__ import annotations

import logging
import re

import h11
import trio

from edge.challenges import HTTP01_PREFIX, Challenges

log = logging.getLogger(__name__)

MAX_HEAD = 8192  # bytes of request line + headers
REQUEST_TIMEOUT = 10.0  # to receive the request head
HOST = re.compile(r"(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")


def respond(challenges: Challenges, target: str, host: str | None, https_port: int) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body for one plain-HTTP request (pure)."""
    path = target.split("?", 1)[0]
    if path.startswith(HTTP01_PREFIX):
        answer = challenges.http.get(path[len(HTTP01_PREFIX):])
        if answer is None:
            return 404, [("content-type", "text/plain")], b"no such ACME challenge\n"
        return 200, [("content-type", "application/octet-stream")], answer.encode()
    match = HOST.fullmatch(host or "")
    if match is None:
        return 400, [("content-type", "text/plain")], b"a Host header is required\n"
    authority = match.group("host").lower() + ("" if https_port == 443 else f":{https_port}")
    if not target.startswith("/"):
        target = "/"
    return 308, [("location", f"https://{authority}{target}"), ("content-type", "text/plain")], b"use HTTPS\n"


class HttpRedirect:
    def __init__(self, challenges: Challenges, https_port: int) -> None:
        self.challenges = challenges
        self.https_port = https_port

    async def serve(self, listen: tuple[str, int], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        host, port = listen
        listeners = await trio.open_tcp_listeners(port, host=host or None)
        bound = listeners[0].socket.getsockname()[:2]
        log.info("http.listening address=%s port=%d", *bound)
        task_status.started(bound)
        await trio.serve_listeners(self.handle, listeners)

    async def handle(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                event = connection.next_event()
                while event is h11.NEED_DATA:
                    data = await stream.receive_some(MAX_HEAD)
                    connection.receive_data(data)
                    event = connection.next_event()
                if not isinstance(event, h11.Request):
                    return
                host = dict(event.headers).get(b"host", b"").decode("latin-1")
                status, headers, body = respond(self.challenges, event.target.decode("latin-1"), host, self.https_port)
                if status == 200:
                    log.info("http.acme_challenge_answered host=%s", host)
                headers += [("content-length", str(len(body))), ("connection", "close")]
                await stream.send_all(connection.send(h11.Response(status_code=status, headers=headers)))
                if event.method != b"HEAD":
                    await stream.send_all(connection.send(h11.Data(data=body)))
                await stream.send_all(connection.send(h11.EndOfMessage()))
        except (h11.RemoteProtocolError, h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("http.connection_ended error=%r", exc)
        finally:
            await trio.aclose_forcefully(stream)
