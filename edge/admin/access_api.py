"""`/api/v1/access/…`: service tokens, hostname policies and login users of the caller's account,
plus the public JWKS every edge's Access assertions verify against.

A hostname's policy can be read or changed only by the account that routes it;
any other hostname is simply not found (404). Tokens and users are per account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge.access.keys import KEY_RETIRE_AFTER
from edge.access.login import MIN_PASSWORD, hash_password
from edge.registry.models import ServiceToken
from edge.registry.policy import EMAIL_RE, Policy
from edge.registry.store import Registry
from shared.errors import ConfigError

JWKS_PATHS = ("/api/v1/access/jwks", "/cdn-cgi/access/certs")
MAX_PASSWORD = 1024


def access_routes(
    registry: Registry,
    authed: Callable,
    run: Callable[..., Awaitable[Any]],
    on_change: Callable[[], Awaitable[None]],
    body: Callable[[Request], Awaitable[dict[str, Any]]],
) -> list[Route]:
    """The Access routes, sharing the admin API's authentication (`authed`) and worker threads (`run`)."""

    async def create_token(request: Request, account) -> JSONResponse:
        """Create a service token; its secret is in this answer only.
        ---
        summary: Create a service token
        requestBody: {required: true, content: {application/json: {schema: {type: object, required: [name], properties: {name: {type: string}}}}}}
        responses:
          201: {description: "{name, client_id, client_secret, created_at}"}
          400: {$ref: "#/components/responses/Error"}
          409: {$ref: "#/components/responses/Error"}
        """
        name = (await body(request)).get("name")
        if not isinstance(name, str):
            raise ConfigError("missing field 'name'")
        token, secret = await run(registry.create_service_token, account.id, name)
        await on_change()
        return JSONResponse(_token_json(token) | {"client_secret": secret}, status_code=201)

    async def list_tokens(request: Request, account) -> JSONResponse:
        """The account's live service tokens (never their secrets).
        ---
        summary: List service tokens
        responses:
          200: {description: "{tokens: [{name, client_id, created_at}]}"}
        """
        tokens = await run(registry.list_service_tokens, account.id)
        return JSONResponse({"tokens": [_token_json(t) for t in tokens]})

    async def revoke_token(request: Request, account) -> JSONResponse:
        """Revoke a service token by name.
        ---
        summary: Revoke a service token
        responses:
          200: {description: "{name, revoked: true}"}
          404: {$ref: "#/components/responses/Error"}
        """
        name = request.path_params["name"]
        await run(registry.revoke_service_token, account.id, name)
        await on_change()
        return JSONResponse({"name": name, "revoked": True})

    async def get_policy(request: Request, account) -> JSONResponse:
        """The policy of a hostname the account routes.
        ---
        summary: Show a hostname's policy
        responses:
          200: {description: "{hostname, policy: {...} or null, access_required}"}
          404: {$ref: "#/components/responses/Error"}
        """
        host, policy = await run(registry.get_policy, account.id, request.path_params["hostname"])
        return JSONResponse(_policy_json(host, policy))

    async def set_policy(request: Request, account) -> JSONResponse:
        """Replace the policy of a hostname the account routes.
        ---
        summary: Set a hostname's policy
        requestBody: {required: true, content: {application/json: {schema: {type: object, properties: {allow_tokens: {type: array}, allow_emails: {type: array}, allow_ips: {type: array}, deny_ips: {type: array}, rate_limit: {type: string, example: 100/60s}}}}}}
        responses:
          200: {description: "{hostname, policy, access_required}"}
          400: {$ref: "#/components/responses/Error"}
          404: {$ref: "#/components/responses/Error"}
        """
        policy = Policy.parse(await body(request))
        host = await run(registry.set_policy, account.id, request.path_params["hostname"], policy)
        await on_change()
        return JSONResponse(_policy_json(host, policy))

    async def delete_policy(request: Request, account) -> JSONResponse:
        """Remove a hostname's policy: it is public again.
        ---
        summary: Delete a hostname's policy
        responses:
          200: {description: "{hostname, deleted: true}"}
          404: {$ref: "#/components/responses/Error"}
        """
        host = await run(registry.delete_policy, account.id, request.path_params["hostname"])
        await on_change()
        return JSONResponse({"hostname": host, "deleted": True})

    async def set_user(request: Request, account) -> JSONResponse:
        """Add a person who may sign in (or set a new password); the edge stores an scrypt hash.
        ---
        summary: Add an Access user
        requestBody: {required: true, content: {application/json: {schema: {type: object, required: [email, password], properties: {email: {type: string}, password: {type: string}}}}}}
        responses:
          200: {description: "{email}"}
          400: {$ref: "#/components/responses/Error"}
        """
        data = await body(request)
        email, password = data.get("email"), data.get("password")
        if not isinstance(email, str) or not EMAIL_RE.fullmatch(email.strip()):
            raise ConfigError(f"invalid email address {email!r}")
        if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise ConfigError(f"the password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")
        email = email.strip().lower()
        hashed = await run(hash_password, password)
        await run(registry.set_access_user, account.id, email, hashed)
        await on_change()
        return JSONResponse({"email": email})

    async def list_users(request: Request, account) -> JSONResponse:
        """The account's Access users.
        ---
        summary: List Access users
        responses:
          200: {description: "{users: [email, ...]}"}
        """
        return JSONResponse({"users": await run(registry.list_access_users, account.id)})

    async def remove_user(request: Request, account) -> JSONResponse:
        """Remove an Access user; their sessions stop working at the next refresh.
        ---
        summary: Remove an Access user
        responses:
          200: {description: "{email, removed: true}"}
          404: {$ref: "#/components/responses/Error"}
        """
        email = request.path_params["email"].strip().lower()
        await run(registry.remove_access_user, account.id, email)
        await on_change()
        return JSONResponse({"email": email, "removed": True})

    async def jwks(request: Request) -> JSONResponse:
        """The public keys of every edge's Access assertions (no authentication).
        ---
        summary: Access JWKS
        security: []
        responses:
          200: {description: "{keys: [JWK, ...]}"}
        """
        keys = await run(registry.access_keys, KEY_RETIRE_AFTER)
        return JSONResponse({"keys": keys}, headers={"cache-control": "max-age=300"})

    tokens, policies, users = "/api/v1/access/tokens", "/api/v1/access/policies/{hostname}", "/api/v1/access/users"
    return [
        Route(tokens, authed(create_token), methods=["POST"]),
        Route(tokens, authed(list_tokens), methods=["GET"]),
        Route(tokens + "/{name}", authed(revoke_token), methods=["DELETE"]),
        Route(policies, authed(get_policy), methods=["GET"]),
        Route(policies, authed(set_policy), methods=["PUT"]),
        Route(policies, authed(delete_policy), methods=["DELETE"]),
        Route(users, authed(set_user), methods=["POST"]),
        Route(users, authed(list_users), methods=["GET"]),
        Route(users + "/{email}", authed(remove_user), methods=["DELETE"]),
        *(Route(path, jwks, methods=["GET"]) for path in JWKS_PATHS),
    ]


def _token_json(token: ServiceToken) -> dict[str, str]:
    return {"name": token.name, "client_id": token.client_id, "created_at": token.created_at}


def _policy_json(host: str, policy: Policy | None) -> dict[str, Any]:
    return {
        "hostname": host,
        "policy": policy.to_json() if policy else None,
        "access_required": bool(policy and policy.requires_access),
    }
