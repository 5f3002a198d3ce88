"""The `/api/v1` admin API: an ASGI app the edge serves on its own hostname.

Every route needs `Authorization: Bearer <login token>` and sees only the
caller's account. Registry calls block, so they run in worker threads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from functools import partial, wraps
from typing import Any, Protocol

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

from edge.admin.access_api import access_routes
from edge.admin.connector_pools import connector_pools, pools_json
from edge.admin.networks_api import network_routes
from edge.registry.models import Account, Connection, PortRoute, Record, Tunnel
from edge.registry.ports import DEFAULT_MAX_PER_ACCOUNT as DEFAULT_MAX_PORTS_PER_ACCOUNT
from edge.registry.ports import PROTOCOLS
from edge.registry.store import Registry
from shared.crypto import b64decode
from shared.edge_config import PortRange
from shared.errors import AuthError, BurrowError, ConfigError, ConflictError

log = logging.getLogger(__name__)

Handler = Callable[[Request, Account], Awaitable[JSONResponse]]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _tunnel_json(tunnel: Tunnel) -> dict[str, str]:
    return {
        "id": tunnel.id,
        "name": tunnel.name,
        "account_id": tunnel.account_id,
        "created_at": tunnel.created_at,
    }


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise ConfigError("request body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str, kind: type = str) -> Any:
    value = body.get(name)
    if value is None:
        raise ConfigError(f"missing field '{name}'")
    if not isinstance(value, kind):
        raise ConfigError(f"field '{name}' must be a {kind.__name__}")
    return value


class LiveSessions(Protocol):
    """What the API needs from the router: the live sessions of a tunnel on this edge."""

    def connections(self, tunnel_id: str) -> list[Connection]: ...

    def count(self, tunnel_id: str) -> int: ...

    async def drop(self, tunnel_id: str, grace: float) -> int: ...

    def by_connector(self, tunnel_id: str, feature: str) -> dict[str, Any]: ...


class NoSessions:
    """`LiveSessions` for an API without a tunnel listener (tests, tools)."""

    def connections(self, tunnel_id: str) -> list[Connection]:
        return []

    def count(self, tunnel_id: str) -> int:
        return 0

    async def drop(self, tunnel_id: str, grace: float) -> int:
        return 0

    def by_connector(self, tunnel_id: str, feature: str) -> dict[str, Any]:
        return {}


def create_api(
    registry: Registry,
    edge_info: Callable[[], dict],
    on_change: Callable[[], Awaitable[None]],
    *,
    live: LiveSessions | None = None,
    edge_id: str = "",
    extra_routes: Sequence[BaseRoute] = (),
    port_ranges: dict[str, PortRange | None] | None = None,
    max_ports_per_account: int = DEFAULT_MAX_PORTS_PER_ACCOUNT,
) -> Starlette:
    """The admin API over `registry`; `await on_change()` runs after every write, before the answer,
    so DNS and routing see a change as soon as the API acknowledges it. `live` answers for the
    sessions this edge (`edge_id`) holds; `extra_routes` (the dashboard) are served alongside;
    `port_ranges`: the public ports tunnels may reserve, by protocol (none without), at most
    `max_ports_per_account` of them per account."""
    sessions: LiveSessions = live if live is not None else NoSessions()
    ranges = port_ranges or {}

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))

    def authed(handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
        @wraps(handler)
        async def endpoint(request: Request) -> JSONResponse:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("missing bearer token")
            account = await run(registry.authenticate, token.strip())
            return await handler(request, account)

        return endpoint

    def zone_names() -> list[str]:
        info = edge_info()
        return list(info.get("zones") or [info["zone"]])

    async def tunnel_of(request: Request, account: Account) -> Tunnel:
        return await run(registry.get_tunnel, account.id, request.path_params["name_or_id"])

    def summary(tunnel: Tunnel, hostnames: list[str], ports: list[PortRoute]) -> dict[str, Any]:
        held = [_port_json(route) for route in ports if route.tunnel_id == tunnel.id]
        return _tunnel_json(tunnel) | {"hostnames": hostnames, "ports": held, "connections": sessions.count(tunnel.id)}

    async def get_account(request: Request, account: Account) -> JSONResponse:
        """The account the token belongs to.
        ---
        summary: The caller's account
        responses:
          200: {description: "{id, name}", content: {application/json: {schema: {$ref: "#/components/schemas/Account"}}}}
          401: {$ref: "#/components/responses/Error"}
        """
        return JSONResponse({"id": account.id, "name": account.name})

    async def get_edge(request: Request, account: Account) -> JSONResponse:
        """The edge's zones and tunnel endpoint.
        ---
        summary: Edge information
        responses:
          200: {description: "{zone, zones, tunnel_endpoint}"}
          401: {$ref: "#/components/responses/Error"}
        """
        return JSONResponse(edge_info())

    async def create_tunnel(request: Request, account: Account) -> JSONResponse:
        """Create a tunnel; the edge stores only a hash of its secret.
        ---
        summary: Create a tunnel
        requestBody:
          required: true
          content: {application/json: {schema: {type: object, required: [name, secret], properties: {name: {type: string}, secret: {type: string, description: 32 random bytes, base64}}}}}
        responses:
          201: {description: "The tunnel and the endpoint to connect to", content: {application/json: {schema: {$ref: "#/components/schemas/Tunnel"}}}}
          400: {$ref: "#/components/responses/Error"}
          401: {$ref: "#/components/responses/Error"}
          409: {$ref: "#/components/responses/Error"}
        """
        body = await _body(request)
        name = _field(body, "name")
        try:
            secret = b64decode(_field(body, "secret"))
        except ValueError as exc:  # binascii.Error and non-ASCII text
            raise ConfigError("field 'secret' must be base64") from exc
        tunnel = await run(registry.create_tunnel, account.id, name, secret)
        await on_change()
        info = _tunnel_json(tunnel) | {"endpoint": edge_info()["tunnel_endpoint"]}
        return JSONResponse(info, status_code=201)

    async def list_tunnels(request: Request, account: Account) -> JSONResponse:
        """The account's tunnels with their hostnames and live connection counts.
        ---
        summary: List tunnels
        responses:
          200: {description: "{tunnels: [...]}", content: {application/json: {schema: {type: object, properties: {tunnels: {type: array, items: {$ref: "#/components/schemas/Tunnel"}}}}}}}
          401: {$ref: "#/components/responses/Error"}
        """

        def read() -> tuple[list[Tunnel], dict[str, list[str]], list[PortRoute]]:
            tunnels, routes = registry.list_tunnels(account.id), registry.routes(account.id)
            return tunnels, hostnames_by_tunnel(routes), registry.port_routes(account.id)

        tunnels, hosts, ports = await run(read)
        return JSONResponse({"tunnels": [summary(t, hosts.get(t.id, []), ports) for t in tunnels]})

    async def get_tunnel(request: Request, account: Account) -> JSONResponse:
        """One of the account's tunnels, by name or id (another account's: 404).
        ---
        summary: Get a tunnel
        parameters: [{$ref: "#/components/parameters/NameOrId"}]
        responses:
          200: {description: "The tunnel", content: {application/json: {schema: {$ref: "#/components/schemas/Tunnel"}}}}
          401: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
        """
        tunnel = await tunnel_of(request, account)
        hosts = hostnames_by_tunnel(await run(registry.routes, account.id))
        ports = await run(registry.port_routes, account.id)
        return JSONResponse(summary(tunnel, hosts.get(tunnel.id, []), ports))

    async def delete_tunnel(request: Request, account: Account) -> JSONResponse:
        """Delete a tunnel and its DNS routes; with live connections only when forced, which closes them.
        ---
        summary: Delete a tunnel
        parameters:
          - {$ref: "#/components/parameters/NameOrId"}
          - {name: force, in: query, required: false, schema: {type: boolean, default: false}}
        responses:
          200: {description: "The deleted tunnel and how many live connections were closed"}
          400: {$ref: "#/components/responses/Error"}
          401: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
          409: {$ref: "#/components/responses/Error"}
        """
        force = _bool_query(request, "force")
        tunnel = await tunnel_of(request, account)
        live_count = sessions.count(tunnel.id)
        if live_count and not force:
            plural = "s" if live_count != 1 else ""
            raise ConflictError(f"tunnel '{tunnel.name}' has {live_count} live connection{plural}; use --force")
        await run(registry.delete_tunnel, account.id, tunnel.id)
        await on_change()
        # Always drop: a connector may have registered since the count above.
        closed = await sessions.drop(tunnel.id, DROP_GRACE)
        return JSONResponse(_tunnel_json(tunnel) | {"deleted": True, "closed_connections": closed})

    async def tunnel_connections(request: Request, account: Account) -> JSONResponse:
        """The tunnel's live connections on this edge, and how many stale rows remain.
        ---
        summary: Tunnel connections
        parameters: [{$ref: "#/components/parameters/NameOrId"}]
        responses:
          200: {description: "{id, name, connections: [...], stale}", content: {application/json: {schema: {type: object, properties: {connections: {type: array, items: {$ref: "#/components/schemas/Connection"}}, stale: {type: integer}}}}}}
          401: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
        """
        tunnel = await tunnel_of(request, account)
        current = [c for c in sessions.connections(tunnel.id) if c is not None]
        rows = await run(registry.list_connections, tunnel.id)
        stale = stale_count(rows, current, edge_id)
        return JSONResponse(
            {"id": tunnel.id, "name": tunnel.name, "connections": [asdict(c) for c in current], "stale": stale}
        )

    async def tunnel_pools(request: Request, account: Account) -> JSONResponse:
        """The origin pools of each connector with a session on this edge, as each connector reports them.
        ---
        summary: Tunnel origin pools
        parameters: [{$ref: "#/components/parameters/NameOrId"}]
        responses:
          200: {description: "{id, name, connectors: [{connector_id, pools: [{name, policy, checked, retries, origins: [...]}], truncated, error}]}"}
          401: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
        """
        tunnel = await tunnel_of(request, account)
        answers = await connector_pools(sessions, tunnel.id)
        return JSONResponse({"id": tunnel.id, "name": tunnel.name, "connectors": [pools_json(a) for a in answers]})

    async def cleanup_tunnel(request: Request, account: Account) -> JSONResponse:
        """Remove the tunnel's stale connection rows (left by an earlier or crashed edge run).
        ---
        summary: Clean up stale connections
        parameters: [{$ref: "#/components/parameters/NameOrId"}]
        responses:
          200: {description: "{removed}"}
          401: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
        """
        tunnel = await tunnel_of(request, account)
        removed = await run(registry.cleanup_connections, edge_id, tunnel.id)
        return JSONResponse({"id": tunnel.id, "name": tunnel.name, "removed": removed})

    async def route_dns(request: Request, account: Account) -> JSONResponse:
        """Point a hostname at a tunnel with a CNAME record.
        ---
        summary: Route a hostname
        requestBody:
          required: true
          content: {application/json: {schema: {type: object, required: [tunnel, hostname], properties: {tunnel: {type: string}, hostname: {type: string}, overwrite: {type: boolean, default: false}}}}}
        responses:
          200: {description: "The record", content: {application/json: {schema: {$ref: "#/components/schemas/Record"}}}}
          400: {$ref: "#/components/responses/Error"}
          401: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
          409: {$ref: "#/components/responses/Error"}
        """
        body = await _body(request)
        name_or_id = _field(body, "tunnel")
        hostname = _field(body, "hostname")
        overwrite = body.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise ConfigError("field 'overwrite' must be a bool")
        zones = zone_names()

        def route() -> Any:
            tunnel = registry.get_tunnel(account.id, name_or_id)
            return registry.route_dns(account.id, tunnel.id, hostname, zones, overwrite)

        record = await run(route)
        await on_change()
        return JSONResponse(_record_json(record))

    async def remove_route(request: Request, account: Account) -> JSONResponse:
        """Remove the account's route for a hostname (another account's: 404).
        ---
        summary: Remove a route
        parameters: [{name: hostname, in: path, required: true, schema: {type: string}}]
        responses:
          200: {description: "The removed record", content: {application/json: {schema: {$ref: "#/components/schemas/Record"}}}}
          401: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
        """
        record = await run(registry.remove_route, account.id, request.path_params["hostname"])
        await on_change()
        return JSONResponse(_record_json(record))

    def port_params(request: Request) -> tuple[str, int]:
        protocol, port = request.path_params["protocol"], request.path_params["port"]
        if protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {protocol!r} (tcp or udp)")
        if not port.isdigit() or len(port) > 5:
            raise ConfigError(f"port {port!r} is not a port number")
        return protocol, int(port)

    async def route_port(request: Request, account: Account) -> JSONResponse:
        """Reserve a public TCP or UDP port of the edge's range for a tunnel; the edge listens on it at once.
        ---
        summary: Route a public port
        parameters: [{$ref: "#/components/parameters/NameOrId"}, {$ref: "#/components/parameters/Protocol"}, {$ref: "#/components/parameters/Port"}]
        responses:
          200: {description: "The port route", content: {application/json: {schema: {$ref: "#/components/schemas/PortRoute"}}}}
          400: {$ref: "#/components/responses/Error"}
          401: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
          409: {$ref: "#/components/responses/Error"}
        """
        protocol, port = port_params(request)
        tunnel = await tunnel_of(request, account)
        route = await run(registry.route_port, account.id, tunnel.id, protocol, port, ranges.get(protocol), max_ports_per_account)
        await on_change()
        return JSONResponse(_port_json(route) | {"tunnel_id": tunnel.id, "tunnel": tunnel.name})

    async def remove_port(request: Request, account: Account) -> JSONResponse:
        """Release a public port the tunnel holds; the edge stops listening on it, closing its connections.
        ---
        summary: Remove a public port route
        parameters: [{$ref: "#/components/parameters/NameOrId"}, {$ref: "#/components/parameters/Protocol"}, {$ref: "#/components/parameters/Port"}]
        responses:
          200: {description: "The removed port route", content: {application/json: {schema: {$ref: "#/components/schemas/PortRoute"}}}}
          401: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
        """
        protocol, port = port_params(request)
        tunnel = await tunnel_of(request, account)
        route = await run(registry.remove_port, account.id, tunnel.id, protocol, port)
        await on_change()
        return JSONResponse(_port_json(route) | {"tunnel_id": tunnel.id, "tunnel": tunnel.name})

    async def openapi(request: Request) -> JSONResponse:
        """This document.
        ---
        summary: OpenAPI document of the admin API
        security: []
        responses:
          200: {description: OpenAPI 3.1 document}
        """
        return JSONResponse(SCHEMAS.get_schema(request.app.routes))

    async def burrow_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BurrowError)
        status = exc.http_status
        log.debug("api.error path=%s status=%d error=%s", request.url.path, status, exc)
        return _error(status, str(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail)

    tunnel_path = "/api/v1/tunnels/{name_or_id}"
    return Starlette(
        routes=[
            Route("/api/v1/openapi.json", openapi, methods=["GET"]),
            Route("/api/v1/account", authed(get_account), methods=["GET"]),
            Route("/api/v1/edge", authed(get_edge), methods=["GET"]),
            Route("/api/v1/tunnels", authed(create_tunnel), methods=["POST"]),
            Route("/api/v1/tunnels", authed(list_tunnels), methods=["GET"]),
            Route(tunnel_path, authed(get_tunnel), methods=["GET"]),
            Route(tunnel_path, authed(delete_tunnel), methods=["DELETE"]),
            Route(tunnel_path + "/connections", authed(tunnel_connections), methods=["GET"]),
            Route(tunnel_path + "/cleanup", authed(cleanup_tunnel), methods=["POST"]),
            Route(tunnel_path + "/pools", authed(tunnel_pools), methods=["GET"]),
            Route(tunnel_path + "/ports/{protocol}/{port}", authed(route_port), methods=["PUT"]),
            Route(tunnel_path + "/ports/{protocol}/{port}", authed(remove_port), methods=["DELETE"]),
            Route("/api/v1/routes/dns", authed(route_dns), methods=["PUT"]),
            Route("/api/v1/routes/dns/{hostname}", authed(remove_route), methods=["DELETE"]),
            *access_routes(registry, authed, run, on_change, _body),
            *network_routes(registry, authed, run, on_change, _body),
            *extra_routes,
        ],
        exception_handlers={BurrowError: burrow_error, HTTPException: http_error},
    )


def stale_count(rows: list[Connection], live: list[Connection], edge_id: str) -> int:
    """How many recorded connections of a tunnel no live session on this edge backs."""
    live_ids = {c.id for c in live}
    return sum(1 for row in rows if row.id not in live_ids and row.edge_id != edge_id)


def hostnames_by_tunnel(records: list[Record]) -> dict[str, list[str]]:
    by_tunnel: dict[str, list[str]] = {}
    for record in records:
        by_tunnel.setdefault(record.tunnel_id, []).append(record.hostname)
    return by_tunnel


def _record_json(record: Record) -> dict[str, str]:
    return {"hostname": record.hostname, "type": record.type, "target": record.target, "tunnel_id": record.tunnel_id}


def _port_json(route: PortRoute) -> dict[str, Any]:
    return {"protocol": route.protocol, "port": route.port}


def _bool_query(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in BOOLS:
        raise ConfigError(f"query parameter '{name}' must be true or false")
    return BOOLS[value]


BOOLS = {"true": True, "1": True, "false": False, "0": False, "": False}
DROP_GRACE = 2.0  # seconds a force-deleted tunnel's in-flight requests get before its sessions close
_STRING = {"type": "string"}
SCHEMAS = SchemaGenerator(
    {
        "openapi": "3.1.0",
        "info": {"title": "Burrow edge admin API", "version": "1"},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "login token"}},
            "parameters": {
                "NameOrId": {"name": "name_or_id", "in": "path", "required": True, "schema": _STRING},
                "Protocol": {"name": "protocol", "in": "path", "required": True, "schema": {"enum": ["tcp", "udp"]}},
                "Port": {"name": "port", "in": "path", "required": True, "schema": {"type": "integer"}},
            },
            "responses": {
                "Error": {
                    "description": "An error, as one readable line",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": _STRING}},
                "Account": {"type": "object", "properties": {"id": _STRING, "name": _STRING}},
                "Tunnel": {
                    "type": "object",
                    "required": ["id", "name", "account_id", "created_at"],
                    "properties": {
                        "id": _STRING, "name": _STRING, "account_id": _STRING, "created_at": _STRING,
                        "endpoint": _STRING, "hostnames": {"type": "array", "items": _STRING},
                        "ports": {"type": "array", "items": {"$ref": "#/components/schemas/PortRoute"}},
                        "connections": {"type": "integer"},
                    },
                },
                "Connection": {
                    "type": "object",
                    "properties": {
                        "id": _STRING, "tunnel_id": _STRING, "connector_id": _STRING,
                        "conn_index": {"type": "integer"}, "edge_id": _STRING, "client_version": _STRING,
                        "source": _STRING, "connected_at": _STRING,
                    },
                },
                "PortRoute": {
                    "type": "object",
                    "properties": {"protocol": {"enum": ["tcp", "udp"]}, "port": {"type": "integer"}, "tunnel": _STRING},
                },
                "Record": {
                    "type": "object",
                    "properties": {"hostname": _STRING, "type": _STRING, "target": _STRING, "tunnel_id": _STRING},
                },
            },
        },
    }
)
