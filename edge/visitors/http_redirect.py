"""The plain-HTTP listener (`http-listen`, usually :80): ACME HTTP-01 answers, a 308
redirect to HTTPS for the hostnames the edge serves (404 for others: a shared edge does
not redirect for names it does not own), except hostnames in `http-redirect-exempt`:
their requests go through the proxy as on HTTPS, with `X-Forwarded-Proto: http`.
HTTP/1.1 with the HTTPS listener's limits (`Http1Limits`, connections per IP)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import trio

from edge.certs.challenges import HTTP01_PREFIX, Challenges
from edge.dns.zone import normalize_host
from edge.visitors.connections import (
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    ConnectionsPerIp,
    socket_address,
)
from edge.visitors.http1 import Http1Connection, Http1Exchange, Http1Limits
from shared.events import ResponseHead

log = logging.getLogger(__name__)

HOST = re.compile(r"(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?")


def respond(
    challenges: Challenges, target: str, host: str | None, https_port: int, served: bool
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body for one plain-HTTP request that is not proxied (pure);
    `served`: the edge serves the request's hostname over HTTPS."""
    path = target.split("?", 1)[0]
    if path.startswith(HTTP01_PREFIX):
        answer = challenges.http.get(path[len(HTTP01_PREFIX):])
        if answer is None:
            return 404, [("content-type", "text/plain")], b"no such ACME challenge\n"
        return 200, [("content-type", "application/octet-stream")], answer.encode()
    match = HOST.fullmatch(host or "")
    if match is None:
        return 400, [("content-type", "text/plain")], b"a Host header is required\n"
    if not served:
        return 404, [("content-type", "text/plain")], b"no such hostname here\n"
    authority = match.group("host").lower() + ("" if https_port == 443 else f":{https_port}")
    if not target.startswith("/"):
        target = "/"
    return 308, [("location", f"https://{authority}{target}"), ("content-type", "text/plain")], b"use HTTPS\n"


def is_exempt(host: str, patterns: tuple[str, ...]) -> bool:
    """True if `host` is listed in `patterns`, or is one label under a listed `*.parent`."""
    parent = host.partition(".")[2]
    return host in patterns or (bool(parent) and f"*.{parent}" in patterns)


class HttpRedirect:
    """Serves connections accepted on the plain-HTTP listener."""

    def __init__(
        self,
        challenges: Challenges,
        https_port: int,
        *,
        serves: Callable[[str], bool],
        proxy: Callable[[Http1Exchange], Awaitable[None]] | None = None,
        exempt: tuple[str, ...] = (),
        api_hosts: frozenset[str] = frozenset(),
        limits: Http1Limits = Http1Limits(),
        max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP,
    ) -> None:
        self.challenges = challenges
        self.https_port = https_port
        self.serves = serves  # normalized hostname -> routed here (the proxy's `serves`)
        self.proxy = proxy  # the HTTPS listener's request handler, for exempt hostnames
        self.exempt = exempt if proxy is not None else ()
        self.api_hosts = api_hosts  # the admin API is never served in plain text
        self.limits = limits
        self.connections_per_ip = ConnectionsPerIp(max_connections_per_ip)

    async def serve(self, listen: tuple[str, int], bound: list | None = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve on `listen`, or on the sockets `bound` already (a worker's)."""
        if bound is not None:
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock)) for sock in bound]
        else:
            host, port = listen
            listeners = await trio.open_tcp_listeners(port, host=host or None)
        bound = listeners[0].socket.getsockname()[:2]
        log.info("http.listening address=%s port=%d", *bound)
        task_status.started(bound)
        await trio.serve_listeners(self.handle, listeners)

    async def handle(self, stream: trio.SocketStream) -> None:
        client, server = socket_address(stream, "getpeername"), socket_address(stream, "getsockname")
        ip = client[0]
        if not self.connections_per_ip.admit(ip):
            log.info("http.refused client=%s reason=too-many-connections", ip)
            await trio.aclose_forcefully(stream)
            return
        try:
            await Http1Connection(stream, client, server, self.limits, scheme=b"http").serve(self.answer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError) as exc:
            log.debug("http.connection_ended client=%s error=%r", ip, exc)
        except Exception:  # one visitor's failure must never stop the listener
            log.exception("http.connection_crashed client=%s", ip)
        finally:
            self.connections_per_ip.release(ip)
            await trio.aclose_forcefully(stream)

    async def answer(self, exchange: Http1Exchange) -> None:
        """One request: proxied for an exempt hostname, else a challenge answer or a redirect."""
        head = exchange.head
        authority = head.authority.decode("latin-1")
        target = head.target.decode("latin-1")
        host = normalize_host(authority)
        if not target.startswith(HTTP01_PREFIX) and host not in self.api_hosts and is_exempt(host, self.exempt):
            await self.proxy(exchange)
            return
        status, headers, body = respond(self.challenges, target, authority, self.https_port, self.serves(host))
        if status == 200:
            log.info("http.acme_challenge_answered host=%s", host)
        fields = tuple((name.encode(), value.encode("latin-1")) for name, value in headers)
        await exchange.send_response(ResponseHead(status, (*fields, (b"content-length", b"%d" % len(body)))))
        if head.method != b"HEAD":
            await exchange.send_body(body)
        await exchange.end()
