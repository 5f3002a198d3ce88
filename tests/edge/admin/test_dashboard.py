"""The dashboard without a browser: login, session cookie, account isolation, CSRF, actions."""

from __future__ import annotations

import re

import httpx
import pytest

from edge.admin import dashboard_pages as pages
from edge.admin.api import create_api
from edge.admin.connector_pools import ConnectorPools
from edge.admin.dashboard import create_dashboard
from edge.admin.dashboard_auth import COOKIE, SessionStore
from edge.registry.models import Connection, Tunnel
from edge.registry.store import Registry
from edge.routing.router import Router
from edge.routing.traffic import TrafficHistory
from shared.crypto import mint_secret
from shared.pool_status import OriginState, PoolReport, PoolState

ZONE = "example.test"
BASE = f"https://{ZONE}"


class FakeSession:
    """Stands in for a TunnelConnection in the router: records the drain the dashboard asks for."""

    def __init__(self) -> None:
        self.drained: float | None = None

    async def drain(self, grace: float) -> None:
        self.drained = grace


@pytest.fixture
def router(registry: Registry) -> Router:
    return Router(registry.zones([ZONE]))


@pytest.fixture
def traffic() -> TrafficHistory:
    return TrafficHistory()


@pytest.fixture
def app(registry: Registry, router: Router, traffic: TrafficHistory):
    async def on_change():
        router.update_zones(registry.zones([ZONE]))

    dashboard = create_dashboard(registry, lambda: [ZONE], on_change, router, traffic, "edge-1", SessionStore())
    info = {"zone": ZONE, "tunnel_endpoint": "127.0.0.1:7844"}
    return create_api(registry, lambda: info, on_change, live=router, edge_id="edge-1", extra_routes=[dashboard])


@pytest.fixture
def accounts(registry: Registry) -> dict[str, str]:
    """alice (tunnel web, routed at web.example.test) and bob (tunnel secret-bob, routed too)."""
    tokens = {}
    for name, tunnel in (("alice", "web"), ("bob", "secret-bob")):
        account, tokens[name] = registry.create_account(name)
        created = registry.create_tunnel(account.id, tunnel, mint_secret())
        registry.route_dns(account.id, created.id, f"{tunnel}.{ZONE}", [ZONE])
    return tokens


@pytest.fixture
async def anon(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
        yield client


async def login(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/dashboard/login", data={"token": token})


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


@pytest.fixture
async def alice(anon: httpx.AsyncClient, accounts: dict[str, str]) -> httpx.AsyncClient:
    response = await login(anon, accounts["alice"])
    assert response.status_code == 303
    return anon


async def test_without_a_session_pages_redirect_to_login(anon: httpx.AsyncClient, accounts) -> None:
    for path in ("/dashboard/", "/dashboard"):
        response = await anon.get(path, follow_redirects=True)
        assert str(response.url) == f"{BASE}/dashboard/login"
        assert 'name="token"' in response.text
    assert (await anon.get("/dashboard/live")).status_code == 401
    response = await anon.post("/dashboard/routes", data={"tunnel": "web", "hostname": f"x.{ZONE}"})
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/login"
    forged = await anon.get("/dashboard/", headers={"Cookie": f"{COOKIE}=made-up"})
    assert forged.headers["location"] == "/dashboard/login"


async def test_wrong_token_shows_an_error(anon: httpx.AsyncClient, accounts) -> None:
    response = await login(anon, "not-a-token")
    assert response.status_code == 401
    assert "That token was not accepted." in response.text
    assert COOKIE not in response.cookies
    assert (await login(anon, "")).status_code == 401
    response = await anon.post("/dashboard/login", data={"token": accounts["alice"]}, headers={"Origin": "https://evil.test"})
    assert response.status_code == 403 and COOKIE not in response.cookies
    assert "cross-origin form post from https://evil.test" in response.text


async def test_login_sets_a_strict_session_cookie(anon: httpx.AsyncClient, accounts) -> None:
    response = await login(anon, accounts["alice"])
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/"
    cookie = response.headers["set-cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/dashboard", "Max-Age=43200"):
        assert attribute.lower() in cookie.lower(), cookie
    assert accounts["alice"] not in cookie
    page = await anon.get("/dashboard/")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "Burrow · alice" in page.text


async def test_another_accounts_tunnel_is_not_visible(alice: httpx.AsyncClient) -> None:
    page = (await alice.get("/dashboard/")).text
    live = (await alice.get("/dashboard/live")).text
    for html in (page, live):
        assert 'data-tunnel="web"' in html
        assert "secret-bob" not in html
    assert f"web.{ZONE}" in page
    # Acting on bob's tunnel or route by name fails like an unknown one.
    csrf = csrf_of(page)
    await alice.post("/dashboard/routes/delete", data={"csrf": csrf, "hostname": f"secret-bob.{ZONE}"})
    await alice.post("/dashboard/routes", data={"csrf": csrf, "tunnel": "secret-bob", "hostname": f"steal.{ZONE}"})
    await alice.post("/dashboard/connectors/disconnect", data={"csrf": csrf, "tunnel": "secret-bob", "connector": "x"})
    page = (await alice.get("/dashboard/")).text
    assert page.count("tunnel &#x27;secret-bob&#x27; not found") == 2
    assert f"hostname &#x27;secret-bob.{ZONE}&#x27; has no route" in page
    assert "tunnel &#x27;secret-bob&#x27; not found" in page
    assert f"steal.{ZONE}" not in page


async def test_form_posts_need_the_csrf_token(alice: httpx.AsyncClient, registry: Registry) -> None:
    csrf = csrf_of((await alice.get("/dashboard/")).text)
    form = {"tunnel": "web", "hostname": f"api.{ZONE}"}
    for data in (form, {**form, "csrf": "wrong"}):
        response = await alice.post("/dashboard/routes", data=data)
        assert response.status_code == 403
    response = await alice.post("/dashboard/routes", data={**form, "csrf": csrf}, headers={"Origin": "https://evil.test"})
    assert response.status_code == 403
    alice_id = registry.list_accounts()[0].id
    assert [r.hostname for r in registry.routes(alice_id)] == [f"web.{ZONE}"]
    response = await alice.post("/dashboard/routes", data={**form, "csrf": csrf}, headers={"Origin": BASE})
    assert response.status_code == 303
    assert [r.hostname for r in registry.routes(alice_id)] == [f"api.{ZONE}", f"web.{ZONE}"]
    assert (await alice.post("/dashboard/logout", data={})).status_code == 403


async def test_add_and_delete_a_route(alice: httpx.AsyncClient, router: Router) -> None:
    csrf = csrf_of((await alice.get("/dashboard/")).text)
    await alice.post("/dashboard/routes", data={"csrf": csrf, "tunnel": "web", "hostname": f"New.{ZONE}"})
    page = (await alice.get("/dashboard/")).text
    assert f"Added CNAME new.{ZONE}" in page
    assert router.zones.tunnel_for(f"new.{ZONE}")  # the router saw the change at once
    await alice.post("/dashboard/routes/delete", data={"csrf": csrf, "hostname": f"new.{ZONE}"})
    page = (await alice.get("/dashboard/")).text
    assert f"Removed the route for new.{ZONE}" in page
    assert f'data-hostname="new.{ZONE}"' not in page
    assert router.zones.tunnel_for(f"new.{ZONE}") is None


async def test_bad_hostname_is_flashed(alice: httpx.AsyncClient) -> None:
    csrf = csrf_of((await alice.get("/dashboard/")).text)
    response = await alice.post("/dashboard/routes", data={"csrf": csrf, "tunnel": "web", "hostname": "elsewhere.org"})
    assert response.status_code == 303
    page = (await alice.get("/dashboard/")).text
    assert 'class="flash error"' in page and "elsewhere.org" in page
    assert 'class="flash error"' not in (await alice.get("/dashboard/")).text  # shown once


async def test_live_sessions_and_disconnect(alice: httpx.AsyncClient, registry: Registry, router: Router) -> None:
    tunnel = registry.get_tunnel(registry.list_accounts()[0].id, "web")
    fakes = []
    for connector, index in (("c1c1c1c1-aaaa", 0), ("c1c1c1c1-aaaa", 1), ("c2c2c2c2-bbbb", 0)):
        fake = FakeSession()
        info = Connection(f"conn-{connector}-{index}", tunnel.id, connector, index, "edge-1", "burrow/0.1.0", "127.0.0.1:5555", "2026-01-01T00:00:00+00:00")
        router.add(tunnel.id, fake, info)
        fakes.append(fake)
    live = (await alice.get("/dashboard/live")).text
    assert 'data-tunnel="web" data-connections="3"' in live
    assert live.count('class="session"') == 3
    assert live.count("unknown (connector too old)") == 2  # one row per connector: these registered no "status"
    csrf = csrf_of(live)
    response = await alice.post("/dashboard/connectors/disconnect", data={"csrf": csrf, "tunnel": "web", "connector": "c1c1c1c1-aaaa"})
    assert response.status_code == 303
    assert [f.drained is not None for f in fakes] == [True, True, False]
    assert "Closed 2 session(s) of connector c1c1c1c1" in (await alice.get("/dashboard/")).text


def test_pool_rows_are_escaped_and_show_each_origin_state() -> None:
    origins = (
        OriginState("http://127.0.0.1:1", True, 2, 40, 0, True, 1_767_225_600.0),
        OriginState("http://127.0.0.1:2/<b>", False, 0, 7, 5, False, 1_767_225_601.0),
    )
    report = PoolReport((PoolState("<script>x</script>", "round_robin", True, 1, origins),), truncated=True)
    tunnel = Tunnel("t-id", "acct", "web", "2026-01-01T00:00:00+00:00")
    answers = [ConnectorPools("c1c1c1c1-aaaa", report), ConnectorPools("c2c2c2c2-bbbb", None, "no answer within 2 s")]
    html = pages.live_fragment("/dashboard", "csrf", [pages.TunnelView(tunnel, [], [], 0, answers)], {})
    assert "<script>x" not in html and "&lt;script&gt;x&lt;/script&gt;" in html and "<b>" not in html
    assert html.count('class="pool-origin"') == 2 and 'data-healthy="false"' in html
    assert '<td class="unhealthy">unhealthy</td>' in html and "failed at 00:00:01 UTC (5 failed in all)" in html
    assert "passed at 00:00:00 UTC" in html and "no answer within 2 s" in html and "more pools than fit" in html
    quiet = pages.live_fragment("/dashboard", "csrf", [pages.TunnelView(tunnel, [], [], 0, [ConnectorPools("c", PoolReport(()))])], {})
    assert 'class="pools"' not in quiet  # no pools anywhere: no table


async def test_stale_records_can_be_cleaned_up(alice: httpx.AsyncClient, registry: Registry) -> None:
    tunnel = registry.get_tunnel(registry.list_accounts()[0].id, "web")
    registry.add_connection(Connection("old", tunnel.id, "c", 0, "an-earlier-edge", "burrow/0.1.0", "?", "2026-01-01T00:00:00+00:00"))
    live = (await alice.get("/dashboard/live")).text
    assert "1 stale connection record(s)" in live
    await alice.post("/dashboard/tunnels/cleanup", data={"csrf": csrf_of(live), "tunnel": "web"})
    assert "Removed 1 stale connection record(s) of tunnel web" in (await alice.get("/dashboard/")).text
    assert registry.list_connections(tunnel.id) == []
    assert "stale connection" not in (await alice.get("/dashboard/live")).text


async def test_traffic_chart_counts_requests_and_errors(alice: httpx.AsyncClient, traffic: TrafficHistory) -> None:
    for status in (200, 200, 404, 502, 503):
        traffic.record(f"web.{ZONE}", status)
    live = (await alice.get("/dashboard/live")).text
    assert f'data-host="web.{ZONE}" data-requests="5" data-errors="2"' in live
    assert live.count('class="err"') == 1 and live.count('class="req"') == 1


async def test_logout_ends_the_session(alice: httpx.AsyncClient) -> None:
    csrf = csrf_of((await alice.get("/dashboard/")).text)
    old = alice.cookies.get(COOKIE)
    response = await alice.post("/dashboard/logout", data={"csrf": csrf})
    assert response.headers["location"] == "/dashboard/login"
    response = await alice.get("/dashboard/", headers={"Cookie": f"{COOKIE}={old}"})
    assert response.headers["location"] == "/dashboard/login"


async def test_revoking_the_account_ends_its_sessions(alice: httpx.AsyncClient, registry: Registry) -> None:
    assert (await alice.get("/dashboard/")).status_code == 200
    registry.revoke_account("alice")
    assert (await alice.get("/dashboard/")).headers["location"] == "/dashboard/login"


async def test_the_api_and_its_openapi_document_still_work(anon: httpx.AsyncClient, accounts) -> None:
    response = await anon.get("/api/v1/openapi.json")
    assert response.status_code == 200 and not any(p.startswith("/dashboard") for p in response.json()["paths"])
    response = await anon.get("/api/v1/tunnels", headers={"Authorization": f"Bearer {accounts['alice']}"})
    assert [t["name"] for t in response.json()["tunnels"]] == ["web"]


def test_traffic_history_keeps_one_hour_per_minute() -> None:
    now = [3600.0 * 100]
    history = TrafficHistory(clock=lambda: now[0])
    history.record("a.test", 200)
    history.record("a.test", 500)
    history.record("", 200)  # unrouted hosts are not kept
    now[0] += 60
    history.record("a.test", 0)  # no response at all counts as an error
    series = history.series("a.test")
    assert series.requests[-2:] == (2, 1) and series.errors[-2:] == (1, 1)
    assert series.start == now[0] - 59 * 60
    now[0] += 59 * 60  # the first minute has left the window
    assert sum(history.series("a.test").requests) == 1
    now[0] += 60
    history.record("a.test", 200)  # reuses a slot of an hour ago
    assert history.series("a.test").requests[-1] == 1 and sum(history.series("a.test").requests) == 1
    assert sum(history.series("never.test").requests) == 0


def test_sessions_expire_and_are_bounded(monkeypatch) -> None:
    import edge.admin.dashboard_auth as auth

    now = [0.0]
    store = SessionStore(clock=lambda: now[0])
    account = auth.Account("id", "alice", "")
    cookie, session = store.create(account)
    assert store.get(cookie) is session
    now[0] += auth.SESSION_LIFETIME
    assert store.get(cookie) is None
    monkeypatch.setattr(auth, "MAX_SESSIONS", 2)
    first, _ = store.create(account)
    store.create(account)
    store.create(account)
    assert store.get(first) is None

