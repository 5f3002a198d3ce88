"""The web dashboard, mounted under `/dashboard` next to the admin API on the edge's own hostname.

Log in with the account token; the session is an opaque HttpOnly, Secure,
SameSite=Strict cookie (see `edge.dashboard_auth`). Every form POST must carry the
session's CSRF token and, when the browser sends one, a same-origin `Origin`.
Pages are rendered on the server; a small script re-fetches the live part.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from html import escape
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
import trio
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from edge.admin import dashboard_pages as pages
from edge.admin.api import DROP_GRACE, hostnames_by_tunnel, stale_count
from edge.admin.connector_pools import ConnectorPools, connector_pools
from edge.admin.dashboard_auth import COOKIE, SESSION_LIFETIME, Session, SessionStore
from edge.registry.models import Account
from edge.registry.store import Registry
from edge.routing.router import Router
from edge.routing.traffic import TrafficHistory
from shared.errors import AuthError, BurrowError

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
REFRESH_SECONDS = 3.0  # how often the page re-fetches its live part
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # "no-referrer" would make browsers send `Origin: null`
    "cache-control": "no-store",
}


class Forbidden(Exception):
    """A POST without the session's CSRF token or from another origin."""


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(PREFIX + path, status_code=303, headers=SECURITY_HEADERS)


async def _form(request: Request) -> dict[str, str]:
    """The url-encoded form body (first value of each field); other origins are refused."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
        raise Forbidden(f"cross-origin form post from {origin}")
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded":
        raise Forbidden("expected a form post")
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def create_dashboard(
    registry: Registry,
    zone_names: Callable[[], list[str]],
    on_change: Callable[[], Awaitable[None]],
    router: Router,
    traffic: TrafficHistory,
    edge_id: str,
    sessions: SessionStore | None = None,
) -> Mount:
    """The dashboard's routes under PREFIX; `on_change` as for the API (after each route write)."""
    store = sessions if sessions is not None else SessionStore()

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(partial(fn, *args))

    async def current(request: Request) -> tuple[str, Session] | None:
        """The request's cookie and live session, for an account that still exists."""
        cookie = request.cookies.get(COOKIE)
        session = store.get(cookie)
        if session is None:
            return None
        live_ids = {account.id for account in await run(registry.list_accounts)}
        if session.account.id not in live_ids:
            store.drop_account(session.account.id)
            return None
        return cookie, session

    def page_endpoint(handler: Callable[[Request, Session], Awaitable[Response]]):
        async def endpoint(request: Request) -> Response:
            found = await current(request)
            if found is None:
                return _redirect("/login")
            return await handler(request, found[1])

        return endpoint

    def action(handler: Callable[[Account, dict[str, str]], Awaitable[str]]):
        """A form POST: CSRF-checked, then `handler` returns the success message; errors are flashed."""

        async def endpoint(request: Request) -> Response:
            found = await current(request)
            if found is None:
                return _redirect("/login")
            session = found[1]
            try:
                form = await _form(request)
                if not session.check_csrf(form.get("csrf", "")):
                    raise Forbidden("missing or wrong CSRF token")
            except Forbidden as exc:
                log.info("dashboard.forbidden account=%s path=%s error=%s", session.account.id, request.url.path, exc)
                return _html(pages.page(PREFIX, "Forbidden", f"<main><p>{escape(str(exc))}; reload the dashboard.</p></main>"), 403)
            try:
                session.flash.append(("ok", await handler(session.account, form)))
            except BurrowError as exc:
                session.flash.append(("error", str(exc)))
            return _redirect("/")

        return endpoint

    async def view_tunnels(account: Account) -> tuple[list, list]:
        tunnels, routes = await run(lambda: (registry.list_tunnels(account.id), registry.routes(account.id)))
        hosts = hostnames_by_tunnel(routes)
        pools: dict[str, list[ConnectorPools]] = {}

        async def ask(tunnel_id: str) -> None:
            pools[tunnel_id] = await connector_pools(router, tunnel_id)

        async with trio.open_nursery() as nursery:  # every tunnel's connectors at once, each within ASK_TIMEOUT
            for tunnel in tunnels:
                nursery.start_soon(ask, tunnel.id)
        views = []
        for tunnel in tunnels:
            current_conns = [c for c in router.connections(tunnel.id) if c is not None]
            rows = await run(registry.list_connections, tunnel.id)
            stale = stale_count(rows, current_conns, edge_id)
            views.append(pages.TunnelView(tunnel, hosts.get(tunnel.id, []), current_conns, stale, pools[tunnel.id]))
        return views, routes

    async def live_html(session: Session) -> tuple[str, list]:
        views, routes = await view_tunnels(session.account)
        series = {r.hostname: traffic.series(r.hostname) for r in routes}
        return pages.live_fragment(PREFIX, session.csrf, views, series), routes

    async def overview(request: Request, session: Session) -> Response:
        fragment, routes = await live_html(session)
        flash, session.flash = session.flash, []
        tunnels = await run(registry.list_tunnels, session.account.id)
        return _html(pages.overview_page(
            PREFIX, session.account.name, session.csrf, flash, fragment, tunnels, routes, REFRESH_SECONDS
        ))

    async def live(request: Request) -> Response:
        found = await current(request)
        if found is None:
            return Response("log in again", status_code=401, headers=SECURITY_HEADERS)
        fragment, _ = await live_html(found[1])
        return _html(fragment)

    async def login_form(request: Request) -> Response:
        if await current(request) is not None:
            return _redirect("/")
        return _html(pages.login_page(PREFIX))

    async def login(request: Request) -> Response:
        try:
            form = await _form(request)
            account = await run(registry.authenticate, form.get("token", "").strip())
        except Forbidden as exc:
            return _html(pages.login_page(PREFIX, str(exc)), 403)
        except AuthError:
            log.info("dashboard.login_failed client=%s", request.client.host if request.client else "?")
            return _html(pages.login_page(PREFIX, "That token was not accepted."), 401)
        cookie, _ = store.create(account)
        log.info("dashboard.login account=%s", account.id)
        response = _redirect("/")
        response.set_cookie(
            COOKIE, cookie, max_age=SESSION_LIFETIME, path=PREFIX, secure=True, httponly=True, samesite="strict"
        )
        return response

    async def logout(request: Request) -> Response:
        found = await current(request)
        if found is not None:
            cookie, session = found
            try:
                form = await _form(request)
            except Forbidden:
                form = {}
            if not session.check_csrf(form.get("csrf", "")):
                return _html(pages.page(PREFIX, "Forbidden", "<main><p>missing or wrong CSRF token</p></main>"), 403)
            store.drop(cookie)
        response = _redirect("/login")
        response.delete_cookie(COOKIE, path=PREFIX, secure=True, httponly=True, samesite="strict")
        return response

    async def add_route(account: Account, form: dict[str, str]) -> str:
        zones = zone_names()

        def route() -> Any:
            tunnel = registry.get_tunnel(account.id, form.get("tunnel", ""))
            return registry.route_dns(account.id, tunnel.id, form.get("hostname", ""), zones, form.get("overwrite") == "true")

        record = await run(route)
        await on_change()
        return f"Added CNAME {record.hostname} → {record.target}"

    async def delete_route(account: Account, form: dict[str, str]) -> str:
        record = await run(registry.remove_route, account.id, form.get("hostname", ""))
        await on_change()
        return f"Removed the route for {record.hostname}"

    async def disconnect(account: Account, form: dict[str, str]) -> str:
        tunnel = await run(registry.get_tunnel, account.id, form.get("tunnel", ""))
        connector = form.get("connector", "")
        closed = await router.disconnect(tunnel.id, connector, DROP_GRACE)
        return (
            f"Closed {closed} session(s) of connector {connector[:8]} on tunnel {tunnel.name}; "
            "a connector that is still running dials again"
        )

    async def cleanup(account: Account, form: dict[str, str]) -> str:
        tunnel = await run(registry.get_tunnel, account.id, form.get("tunnel", ""))
        removed = await run(registry.cleanup_connections, edge_id, tunnel.id)
        return f"Removed {removed} stale connection record(s) of tunnel {tunnel.name}"

    def static(body: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return Response(body, media_type=media_type, headers={**SECURITY_HEADERS, "cache-control": "max-age=300"})

        return endpoint

    return Mount(PREFIX, routes=[
        Route("/", page_endpoint(overview), methods=["GET"]),
        Route("/live", live, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/routes", action(add_route), methods=["POST"]),
        Route("/routes/delete", action(delete_route), methods=["POST"]),
        Route("/connectors/disconnect", action(disconnect), methods=["POST"]),
        Route("/tunnels/cleanup", action(cleanup), methods=["POST"]),
        Route("/static/dashboard.css", static(pages.CSS, "text/css"), methods=["GET"]),
        Route("/static/dashboard.js", static(pages.SCRIPT, "text/javascript"), methods=["GET"]),
    ])
