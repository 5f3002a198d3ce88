"""Client for the edge's `/api/v1/access` routes: service tokens, hostname and network policies, login users."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from connector.management.edge_api import EdgeAPI


class AccessAPI(EdgeAPI):
    """The `/api/v1/access` part of the admin API."""

    def create_token(self, name: str) -> dict[str, Any]:
        return self._call("POST", "/access/tokens", {"name": name})

    def list_tokens(self) -> list[dict[str, Any]]:
        return self._call("GET", "/access/tokens")["tokens"]

    def revoke_token(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", "/access/tokens/" + quote(name, safe=""))

    def policy(self, hostname: str, method: str = "GET", body: dict | None = None) -> dict[str, Any]:
        return self._call(method, "/access/policies/" + quote(hostname, safe=""), body)

    def set_network_policy(self, network: str, allow_tokens: list[str]) -> dict[str, Any]:
        return self._call("PUT", "/access/networks", {"allow_tokens": allow_tokens}, params={"network": network})

    def network_policies(self) -> dict[str, list[str]]:
        return self._call("GET", "/access/networks")["policies"]

    def delete_network_policy(self, network: str) -> dict[str, Any]:
        return self._call("DELETE", "/access/networks", params={"network": network})

    def set_user(self, email: str, password: str) -> dict[str, Any]:
        return self._call("POST", "/access/users", {"email": email, "password": password})

    def list_users(self) -> list[str]:
        return self._call("GET", "/access/users")["users"]

    def remove_user(self, email: str) -> dict[str, Any]:
        return self._call("DELETE", "/access/users/" + quote(email, safe=""))
