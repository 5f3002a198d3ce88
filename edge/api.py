"""The `/api/v1` admin API: an ASGI app the edge serves on its own hostname.

Every route needs `Authorization: Bearer <login token>` and sees only the
caller's account. Registry calls block, so they run in worker threads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge.registry import Account, Registry, Tunnel
from shared.crypto import b64decode
from shared.errors import AuthError, BurrowError, ConfigError

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


def create_api(
    registry: Registry,
    edge_info: Callable[[], dict],
    on_change: Callable[[], Awaitable[None]],
) -> Starlette:
    """The admin API over `registry`; `await on_change()` runs after every write, before the answer,
    so DNS and routing see a change as soon as the API acknowledges it."""

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))

    def authed(handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def endpoint(request: Request) -> JSONResponse:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("missing bearer token")
            account = await run(registry.authenticate, token.strip())
            return await handler(request, account)

        return endpoint

    async def get_account(request: Request, account: Account) -> JSONResponse:
        return JSONResponse({"id": account.id, "name": account.name})

    async def get_edge(request: Request, account: Account) -> JSONResponse:
        return JSONResponse(edge_info())

    async def create_tunnel(request: Request, account: Account) -> JSONResponse:
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
        tunnels = await run(registry.list_tunnels, account.id)
        return JSONResponse({"tunnels": [_tunnel_json(t) for t in tunnels]})

    async def get_tunnel(request: Request, account: Account) -> JSONResponse:
        name_or_id = request.path_params["name_or_id"]
        return JSONResponse(_tunnel_json(await run(registry.get_tunnel, account.id, name_or_id)))

    async def route_dns(request: Request, account: Account) -> JSONResponse:
        body = await _body(request)
        name_or_id = _field(body, "tunnel")
        hostname = _field(body, "hostname")
        overwrite = body.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise ConfigError("field 'overwrite' must be a bool")
        zone_name = edge_info()["zone"]

        def route() -> Any:
            tunnel = registry.get_tunnel(account.id, name_or_id)
            return registry.route_dns(account.id, tunnel.id, hostname, zone_name, overwrite)

        record = await run(route)
        await on_change()
        return JSONResponse(
            {
                "hostname": record.hostname,
                "type": record.type,
                "target": record.target,
                "tunnel_id": record.tunnel_id,
            }
        )

    async def burrow_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BurrowError)
        status = exc.http_status
        log.debug("api.error path=%s status=%d error=%s", request.url.path, status, exc)
        return _error(status, str(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail)

    return Starlette(
        routes=[
            Route("/api/v1/account", authed(get_account), methods=["GET"]),
            Route("/api/v1/edge", authed(get_edge), methods=["GET"]),
            Route("/api/v1/tunnels", authed(create_tunnel), methods=["POST"]),
            Route("/api/v1/tunnels", authed(list_tunnels), methods=["GET"]),
            Route("/api/v1/tunnels/{name_or_id}", authed(get_tunnel), methods=["GET"]),
            Route("/api/v1/routes/dns", authed(route_dns), methods=["PUT"]),
        ],
        exception_handlers={BurrowError: burrow_error, HTTPException: http_error},
    )
