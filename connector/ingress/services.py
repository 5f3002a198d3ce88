"""The services an ingress rule can send requests to, and `parse_service` for a rule's `service`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from shared.yaml_lines import type_name

HTTP_SCHEMES = {"http": ("http", 80), "ws": ("http", 80), "https": ("https", 443), "wss": ("https", 443)}
TCP_DEFAULT_PORTS = {"ssh": 22, "rdp": 3389, "smb": 445, "tcp": 7864}
KNOWN_SERVICES = (
    "http://, https://, ws://, wss://, unix:, unix+tls:, tcp://, ssh://, rdp://, smb://, http_status:NNN, "
    "hello_world, pool:NAME"
)
POOL_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class HttpService:
    """Proxy to an HTTP(S) origin; ws:// and wss:// are the same as http:// and https://."""

    scheme: str  # "http" | "https"
    host: str
    port: int

    def __str__(self) -> str:
        return self._url

    @cached_property
    def _url(self) -> str:  # once: the origin pool keys its connections by it, per request
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class UnixService:
    """HTTP (or HTTPS with `tls`) over a unix socket: `unix:/path`, `unix+tls:/path`."""

    path: str
    tls: bool = False

    def __str__(self) -> str:
        return f"unix{'+tls' if self.tls else ''}:{self.path}"


@dataclass(frozen=True)
class TcpService:
    """A raw byte stream (ssh://, rdp://, smb://, tcp://), reached with `burrow access`."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class StatusService:
    """A fixed empty response: `http_status:404`."""

    code: int

    def __str__(self) -> str:
        return f"http_status:{self.code}"


@dataclass(frozen=True)
class HelloWorldService:
    """The built-in test page: `hello_world`."""

    def __str__(self) -> str:
        return "hello_world"


@dataclass(frozen=True)
class PoolService:
    """The origins of a pool of the config's `pools:`: `pool:web`."""

    name: str

    def __str__(self) -> str:
        return f"pool:{self.name}"


Service = HttpService | UnixService | TcpService | StatusService | HelloWorldService | PoolService


class RuleError(Exception):
    """A problem with one field of one rule; `Ingress.from_rules` adds the file, line and rule number."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


def parse_service(text: object) -> Service:
    """The service a rule's `service` names, or RuleError saying what is wrong with it."""
    if text is None or text == "":
        raise RuleError("service", "missing (e.g. service: http://localhost:8000)")
    if not isinstance(text, str):
        raise RuleError("service", f"must be a string, not {type_name(text)}")
    for prefix, tls in (("unix:", False), ("unix+tls:", True)):
        if text.startswith(prefix):
            if not text[len(prefix) :]:
                raise RuleError("service", f"{text!r} needs a socket path, e.g. unix:/run/app.sock")
            return UnixService(text[len(prefix) :], tls)
    if text.startswith("http_status:"):
        code = text[len("http_status:") :]
        if not re.fullmatch(r"[0-9]+", code) or not 100 <= int(code) <= 999:
            raise RuleError("service", f"invalid HTTP status code {code!r} in {text!r} (100-999)")
        return StatusService(int(code))
    if text in ("hello_world", "hello-world"):
        return HelloWorldService()
    if text.startswith("pool:"):
        if not POOL_NAME.fullmatch(name := text[len("pool:") :]):
            raise RuleError("service", f"{text!r} needs a pool name of letters, digits, _ . or -, e.g. pool:web")
        return PoolService(name)
    if text in ("bastion", "socks-proxy"):
        raise RuleError("service", f"{text} is not supported by burrow")
    try:
        url = urlsplit(text)
        host, port = url.hostname, url.port
    except ValueError as exc:
        raise RuleError("service", f"{text!r} is an invalid address: {exc}") from None
    if not url.scheme or not host:
        raise RuleError(
            "service", f"{text!r} is an invalid address, please make sure it has a scheme and a hostname"
        )
    if url.path not in ("", "/") or url.query or url.fragment:
        raise RuleError(
            "service",
            f"{text!r} is an invalid address, ingress rules don't support proxying to a different path "
            "on the origin service; the path will be the same as the eyeball request's path",
        )
    if url.scheme in HTTP_SCHEMES:
        scheme, default_port = HTTP_SCHEMES[url.scheme]
        return HttpService(scheme, host, port or default_port)
    if url.scheme not in TCP_DEFAULT_PORTS:
        raise RuleError("service", f"{text!r} has an unknown scheme {url.scheme!r} (known: {KNOWN_SERVICES})")
    return TcpService(url.scheme, host, port or TCP_DEFAULT_PORTS[url.scheme])
