"""`tcp:` and `udp:`: where the edge's public ports reserved for this tunnel (`burrow tunnel
route tcp|udp`) lead: `{port: PORT, service: tcp://HOST:P | udp://HOST:P, originRequest: …}`.

Pure: raw YAML lists → `PortRoute`s by port, and the issues found, each naming its
entry and key (e.g. "tcp[2].service"). A tcp entry's `originRequest` takes the
connection keys (proxyProtocol, connectTimeout, tcpKeepAlive…) over the top-level ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from connector.ingress import origin_request
from connector.ingress.origin_request import Issue, OriginRequest
from connector.ingress.services import RuleError, TcpService, parse_service
from shared.yaml_lines import line_of, type_name

PORT_KEYS = ("port", "service", "originRequest")
UDP_ONLY_KEYS = ("port", "service")


@dataclass(frozen=True)
class UdpService:
    """A UDP origin: `udp://HOST:PORT`."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"udp://{host}:{self.port}"


@dataclass(frozen=True)
class PortRoute:
    """One entry of `tcp:` or `udp:`: public `port` → `service`."""

    protocol: str  # "tcp" | "udp"
    port: int
    service: TcpService | UdpService
    origin_request: OriginRequest = OriginRequest()


def parse(protocol: str, raw: Any, line: int | None, defaults: Mapping[str, Any]) -> tuple[dict[int, PortRoute], list[Issue]]:
    """The valid entries of `raw` (the `tcp:` or `udp:` list) by port, and every issue found."""
    if not isinstance(raw, list):
        return {}, [Issue("", f"must be a list of {{port, service}} entries, not {type_name(raw)}", line)]
    routes: dict[int, PortRoute] = {}
    issues: list[Issue] = []
    for index, entry in enumerate(raw, 1):
        found, entry_issues = _entry(protocol, f"[{index}]", entry, line_of(entry) or line, defaults)
        issues += entry_issues
        if found is None:
            continue
        if found.port in routes:
            issues.append(Issue(f"[{index}].port", f"port {found.port} is listed twice", line_of(entry, "port")))
        else:
            routes[found.port] = found
    return routes, issues


def _entry(
    protocol: str, where: str, raw: Any, line: int | None, defaults: Mapping[str, Any]
) -> tuple[PortRoute | None, list[Issue]]:
    keys = PORT_KEYS if protocol == "tcp" else UDP_ONLY_KEYS
    if not isinstance(raw, Mapping):
        return None, [Issue(where, f"must be a mapping ({', '.join(keys)}), not {type_name(raw)}", line)]
    issues = [
        Issue(f"{where}.{key}", origin_request.unknown_key(key, keys), line_of(raw, key)) for key in raw if key not in keys
    ]
    port = raw.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        issues.append(Issue(f"{where}.port", f"must be a port number 1-65535 (of the edge's range), not {port!r}", line_of(raw, "port") or line))
    try:
        service = (_tcp_service if protocol == "tcp" else _udp_service)(raw.get("service"))
    except RuleError as exc:
        issues.append(Issue(f"{where}.service", str(exc), line_of(raw, "service") or line))
    overrides: dict[str, Any] = {}
    if "originRequest" in raw:
        overrides, option_issues = origin_request.parse(raw["originRequest"], line_of(raw, "originRequest"))
        issues += [
            Issue(f"{where}.originRequest" + (f".{i.path}" if i.path else ""), i.message, i.line, i.warning, i.file)
            for i in option_issues
        ]
    if any(not issue.warning and not issue.file for issue in issues):
        return None, issues
    options = origin_request.merged(defaults, overrides) if protocol == "tcp" else OriginRequest()
    return PortRoute(protocol, port, service, options), issues


def _tcp_service(text: Any) -> TcpService:
    service = parse_service(text)
    if not isinstance(service, TcpService) or service.scheme != "tcp" or urlsplit(text).port is None:
        raise RuleError("service", f"{text!r} is not a TCP origin: use tcp://HOST:PORT")
    return service


def _udp_service(text: Any) -> UdpService:
    if not isinstance(text, str) or not text.startswith("udp://"):
        raise RuleError("service", f"{text!r} is not a UDP origin: use udp://HOST:PORT")
    try:
        url = urlsplit(text)
        host, port = url.hostname, url.port
    except ValueError as exc:
        raise RuleError("service", f"{text!r} is an invalid address: {exc}") from None
    if not host or port is None or url.path not in ("", "/") or url.query or url.fragment:
        raise RuleError("service", f"{text!r} is not a UDP origin: use udp://HOST:PORT")
    return UdpService(host, port)
