"""Client for the edge's `/api/v1` admin API (tunnel login/create/route/list/info/delete/cleanup)."""

from __future__ import annotations

import logging
import ssl
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from connector.egress.errors import ProxyAuthError
from connector.egress.proxies import ProxyChoice
from shared.crypto import b64encode
from shared.errors import (
    AuthError,
    BurrowError,
    ConfigError,
    ConflictError,
    NotFoundError,
    Unreachable,
)

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
ERRORS_BY_STATUS: dict[int, type[BurrowError]] = {
    400: ConfigError,
    401: AuthError,
    404: NotFoundError,
    409: ConflictError,
}


class EdgeAPI:
    """Synchronous admin API client authenticated with an account login token."""

    def __init__(self, edge_url: str, token: str, ca_pem: str | None = None, egress: ProxyChoice = ProxyChoice()) -> None:
        """`egress` picks the proxy to the edge, as it does for `tunnel run`'s connections."""
        self.edge_url = edge_url.rstrip("/")
        verify = ssl.create_default_context(cadata=ca_pem) if ca_pem else True
        host = urlsplit(self.edge_url).hostname or ""
        self.proxy = egress.for_host(host)
        self._client = httpx.Client(
            base_url=self.edge_url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            transport=httpx.HTTPTransport(verify=verify, proxy=egress.httpx_proxy(host)),
            timeout=TIMEOUT_S,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EdgeAPI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, json: dict[str, Any] | None = None, params: dict | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=json, params=params)
        except httpx.ProxyError as exc:  # the proxy answered CONNECT with an error status
            reason = str(exc) or type(exc).__name__
            if reason.startswith(("401", "407")) or "username/password" in reason:  # HTTP CONNECT (as in http_connect), SOCKS5
                raise ProxyAuthError(f"proxy {self.proxy} rejected the user name or password ({reason})") from None
            raise Unreachable(f"proxy {self.proxy} refused to connect to the edge at {self.edge_url}: {reason}") from None
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            via = f" through proxy {self.proxy}" if self.proxy else ""
            raise Unreachable(f"cannot reach the edge at {self.edge_url}{via}: {reason}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict):
            return body
        message = body.get("error") if isinstance(body, dict) else None
        if not message:
            message = f"edge answered {response.status_code} {response.reason_phrase} to {path}"
        log.debug("edge_api.error path=%s status=%d", path, response.status_code)
        raise ERRORS_BY_STATUS.get(response.status_code, BurrowError)(message)

    def account(self) -> dict[str, Any]:
        """The account the token belongs to: `{"id", "name"}`."""
        return self._call("GET", "/account")

    def edge(self) -> dict[str, Any]:
        """The edge's zone and tunnel endpoint."""
        return self._call("GET", "/edge")

    def create_tunnel(self, name: str, secret: bytes) -> dict[str, Any]:
        """Create a tunnel; the edge keeps only the hash of `secret`."""
        return self._call("POST", "/tunnels", {"name": name, "secret": b64encode(secret)})

    def get_tunnel(self, name_or_id: str) -> dict[str, Any]:
        return self._call("GET", _tunnel_path(name_or_id))

    def delete_tunnel(self, name_or_id: str, force: bool = False) -> dict[str, Any]:
        """Delete a tunnel; refused (409) while it has live connections unless `force`."""
        return self._call("DELETE", _tunnel_path(name_or_id), params={"force": "true" if force else "false"})

    def connections(self, name_or_id: str) -> dict[str, Any]:
        """`{"id", "name", "connections": [...], "stale": n}` for one tunnel."""
        return self._call("GET", _tunnel_path(name_or_id) + "/connections")

    def pools(self, name_or_id: str) -> dict[str, Any] | None:
        """`{"id", "name", "connectors": [{"connector_id", "pools", "truncated", "error"}]}` for one
        tunnel; None from an edge too old to have the route."""
        try:
            return self._call("GET", _tunnel_path(name_or_id) + "/pools")
        except NotFoundError:
            return None

    def cleanup(self, name_or_id: str) -> dict[str, Any]:
        """Remove the tunnel's stale connection rows: `{"removed": n}`."""
        return self._call("POST", _tunnel_path(name_or_id) + "/cleanup")

    def list_tunnels(self) -> list[dict[str, Any]]:
        return self._call("GET", "/tunnels")["tunnels"]

    def route_dns(self, tunnel: str, hostname: str, overwrite: bool = False) -> dict[str, Any]:
        """Point `hostname` at `tunnel` (name or id) with a CNAME."""
        return self._call(
            "PUT",
            "/routes/dns",
            {"tunnel": tunnel, "hostname": hostname, "overwrite": overwrite},
        )

    def add_ip_route(self, network: str, tunnel: str, comment: str, overwrite: bool) -> dict[str, Any]:
        """Route the private network `network` (a CIDR) to `tunnel`."""
        return self._call("POST", "/routes/ip", {"network": network, "tunnel": tunnel, "comment": comment, "overwrite": overwrite})

    def ip_routes(self) -> list[dict[str, Any]]:
        return self._call("GET", "/routes/ip")["routes"]

    def delete_ip_route(self, network: str) -> dict[str, Any]:
        return self._call("DELETE", "/routes/ip", params={"network": network})

    def route_port(self, tunnel: str, protocol: str, port: int) -> dict[str, Any]:
        """Reserve public `protocol` (tcp, udp) `port` of the edge for `tunnel` (name or id)."""
        return self._call("PUT", f"{_tunnel_path(tunnel)}/ports/{protocol}/{port}")

    def remove_port(self, tunnel: str, protocol: str, port: int) -> dict[str, Any]:
        return self._call("DELETE", f"{_tunnel_path(tunnel)}/ports/{protocol}/{port}")

    def remove_route(self, hostname: str) -> dict[str, Any]:
        return self._call("DELETE", "/routes/dns/" + quote(hostname, safe=""))


def _tunnel_path(name_or_id: str) -> str:
    return "/tunnels/" + quote(name_or_id, safe="")
