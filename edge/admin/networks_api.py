"""`/api/v1/routes/ip` and `/api/v1/access/networks`: the caller's private-network routes
(`burrow tunnel route ip`) and which service tokens may reach them (`burrow access policy set-network`).

Everything is per account: another account's routes are never listed, and a CIDR
is looked up among the caller's own routes only. A CIDR travels in the query string
(`?network=198.18.5.0/24`), since it holds a slash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge.registry.models import IpRoute
from edge.registry.store import Registry
from shared.errors import ConfigError


def network_routes(
    registry: Registry,
    authed: Callable,
    run: Callable[..., Awaitable[Any]],
    on_change: Callable[[], Awaitable[None]],
    body: Callable[[Request], Awaitable[dict[str, Any]]],
) -> list[Route]:
    """The private-network routes, sharing the admin API's authentication (`authed`) and worker threads (`run`)."""

    async def add_route(request: Request, account) -> JSONResponse:
        """Route a CIDR to one of the account's tunnels; overlapping routes are refused unless `overwrite`.
        ---
        summary: Add a private-network route
        requestBody: {required: true, content: {application/json: {schema: {type: object, required: [network, tunnel], properties: {network: {type: string, example: 198.18.5.0/24}, tunnel: {type: string}, comment: {type: string}, overwrite: {type: boolean}}}}}}
        responses:
          201: {description: "{network, tunnel_id, tunnel_name, comment, created_at, replaced: [...]}"}
          400: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
          409: {$ref: "#/components/responses/Error"}
        """
        data = await body(request)
        network, tunnel, comment = data.get("network"), data.get("tunnel"), data.get("comment") or ""
        if not isinstance(network, str) or not isinstance(tunnel, str) or not isinstance(comment, str):
            raise ConfigError("fields 'network' and 'tunnel' (and an optional 'comment') must be strings")
        route, replaced = await run(registry.add_ip_route, account.id, network, tunnel, comment, data.get("overwrite") is True)
        await on_change()
        return JSONResponse(_route_json(route) | {"replaced": replaced}, status_code=201)

    async def list_routes(request: Request, account) -> JSONResponse:
        """The account's private-network routes.
        ---
        summary: List private-network routes
        responses:
          200: {description: "{routes: [{network, tunnel_id, tunnel_name, comment, created_at}]}"}
        """
        return JSONResponse({"routes": [_route_json(r) for r in await run(registry.ip_routes, account.id)]})

    async def delete_route(request: Request, account) -> JSONResponse:
        """Delete the account's route of a CIDR.
        ---
        summary: Delete a private-network route
        parameters: [{name: network, in: query, required: true, schema: {type: string}}]
        responses:
          200: {description: "{network, deleted: true}"}
          404: {$ref: "#/components/responses/Error"}
        """
        network = await run(registry.delete_ip_route, account.id, _network(request))
        await on_change()
        return JSONResponse({"network": network, "deleted": True})

    async def set_policy(request: Request, account) -> JSONResponse:
        """Replace which service tokens may reach a CIDR inside one of the account's routes.
        ---
        summary: Set a network policy
        parameters: [{name: network, in: query, required: true, schema: {type: string}}]
        requestBody: {required: true, content: {application/json: {schema: {type: object, properties: {allow_tokens: {type: array, items: {type: string}}}}}}}
        responses:
          200: {description: "{network, allow_tokens}"}
          400: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
        """
        tokens = (await body(request)).get("allow_tokens", [])
        if not isinstance(tokens, list) or not all(isinstance(name, str) for name in tokens):
            raise ConfigError("field 'allow_tokens' must be a list of service token names")
        network = await run(registry.set_network_policy, account.id, _network(request), tokens)
        await on_change()
        return JSONResponse({"network": network, "allow_tokens": sorted(set(tokens))})

    async def list_policies(request: Request, account) -> JSONResponse:
        """The account's network policies.
        ---
        summary: List network policies
        responses:
          200: {description: "{policies: {network: [token, ...]}}"}
        """
        return JSONResponse({"policies": await run(registry.network_policies, account.id)})

    async def delete_policy(request: Request, account) -> JSONResponse:
        """Remove a network policy: only the account credential reaches the CIDR then.
        ---
        summary: Delete a network policy
        parameters: [{name: network, in: query, required: true, schema: {type: string}}]
        responses:
          200: {description: "{network, deleted: true}"}
          404: {$ref: "#/components/responses/Error"}
        """
        network = await run(registry.delete_network_policy, account.id, _network(request))
        await on_change()
        return JSONResponse({"network": network, "deleted": True})

    routes, policies = "/api/v1/routes/ip", "/api/v1/access/networks"
    return [
        Route(routes, authed(add_route), methods=["POST"]),
        Route(routes, authed(list_routes), methods=["GET"]),
        Route(routes, authed(delete_route), methods=["DELETE"]),
        Route(policies, authed(list_policies), methods=["GET"]),
        Route(policies, authed(set_policy), methods=["PUT"]),
        Route(policies, authed(delete_policy), methods=["DELETE"]),
    ]


def _network(request: Request) -> str:
    network = request.query_params.get("network")
    if not network:
        raise ConfigError("missing query parameter 'network'")
    return network


def _route_json(route: IpRoute) -> dict[str, str]:
    return {
        "network": route.network, "tunnel_id": route.tunnel_id, "tunnel_name": route.tunnel_name,
        "comment": route.comment, "created_at": route.created_at,
    }
