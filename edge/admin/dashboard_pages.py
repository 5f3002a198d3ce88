"""The dashboard's HTML, CSS and script: plain strings, every value escaped, no external assets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape

from edge.admin.connector_pools import ConnectorPools
from edge.registry.models import Connection, Record, Tunnel
from edge.routing.traffic import MINUTES, Series

CHART_WIDTH = 360
CHART_HEIGHT = 64


@dataclass(frozen=True)
class TunnelView:
    tunnel: Tunnel
    hostnames: list[str]
    connections: list[Connection]  # live on this edge
    stale: int  # recorded rows no live session backs
    pools: Sequence[ConnectorPools] = ()  # each live connector's origin pools, as it answered


CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f5f6f8; }
header { display: flex; align-items: center; gap: 1em; padding: .6em 1.2em; background: #1d2430; color: #fff; }
header h1 { font-size: 1.1em; margin: 0; flex: 1; }
main { padding: 1em 1.2em; max-width: 70em; }
section { background: #fff; border: 1px solid #d8dce3; border-radius: 6px; padding: .8em 1em; margin-bottom: 1em; }
h2 { font-size: 1em; margin: 0 0 .6em; }
table { border-collapse: collapse; width: 100%; margin: .4em 0; }
th, td { text-align: left; padding: .25em .5em; border-bottom: 1px solid #eceef2; vertical-align: top; }
code { font-size: .92em; }
form.inline { display: inline; }
button { cursor: pointer; }
.flash { padding: .5em 1em; border-radius: 6px; margin-bottom: 1em; }
.flash.ok { background: #e3f4e6; border: 1px solid #9ed3a8; }
.flash.error { background: #fbe4e4; border: 1px solid #e6a3a3; }
.muted { color: #687385; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
figcaption { font-size: .9em; }
caption { text-align: left; font-weight: bold; padding: .6em 0 .2em; }
.healthy { color: #1e7a34; } .unhealthy { color: #b42318; font-weight: bold; }
svg .req { fill: #4a7fd6; } svg .err { fill: #d64a4a; } svg .axis { stroke: #b8bfcc; }
.login { max-width: 28em; margin: 4em auto; }
.login input[type=password] { width: 100%; box-sizing: border-box; padding: .4em; margin: .4em 0 .8em; }
"""

# Re-fetches the live section every few seconds; the add-route form stays outside it.
SCRIPT = """
"use strict";
const live = document.getElementById("live");
const every = 1000 * Number(live.dataset.refresh || 3);
async function refresh() {
  try {
    const response = await fetch(live.dataset.src, {credentials: "same-origin", cache: "no-store"});
    if (response.status === 401) { location.reload(); return; }
    if (response.ok) {
      live.innerHTML = await response.text();
      live.dataset.updated = String(Date.now());
    }
  } catch (error) {
    /* the edge is restarting or the network is down: try again next time */
  }
  setTimeout(refresh, every);
}
setTimeout(refresh, every);
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Burrow</title>
<link rel="stylesheet" href="{base}/static/dashboard.css">
</head><body>
{body}
</body></html>
"""


def page(base: str, title: str, body: str) -> str:
    return _PAGE.format(base=base, title=escape(title), body=body)


def login_page(base: str, error: str = "") -> str:
    message = f'<div class="flash error" id="error">{escape(error)}</div>' if error else ""
    body = f"""<main class="login"><section>
<h2>Burrow dashboard</h2>
{message}
<form method="post" action="{base}/login">
<label for="token">Account token</label>
<input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
<button type="submit" id="login">Log in</button>
</form>
<p class="muted">The token <code>burrow-edge account create</code> printed
(the one <code>burrow tunnel login</code> stores).</p>
</section></main>"""
    return page(base, "Log in", body)


def _hidden(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(csrf)}">'


def _button(base: str, csrf: str, action: str, label: str, fields: dict[str, str], confirm: str = "") -> str:
    inputs = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items())
    return (
        f'<form class="inline" method="post" action="{base}{action}">{_hidden(csrf)}{inputs}'
        f'<button type="submit" title="{escape(confirm)}">{escape(label)}</button></form>'
    )


def overview_page(
    base: str, account: str, csrf: str, flash: Sequence[tuple[str, str]], live_html: str,
    tunnels: Sequence[Tunnel], routes: Sequence[Record], refresh: float,
) -> str:
    messages = "".join(f'<div class="flash {escape(kind)}">{escape(text)}</div>' for kind, text in flash)
    names = {t.id: t.name for t in tunnels}
    route_rows = "".join(
        f'<tr data-hostname="{escape(r.hostname)}"><td><code>{escape(r.hostname)}</code></td>'
        f"<td>{escape(names.get(r.tunnel_id, r.tunnel_id))}</td><td><code>{escape(r.target)}</code></td>"
        f"<td>{_button(base, csrf, '/routes/delete', 'Delete', {'hostname': r.hostname})}</td></tr>"
        for r in routes
    ) or '<tr><td colspan="4" class="muted">No routes yet.</td></tr>'
    options = "".join(f'<option value="{escape(t.id)}">{escape(t.name)}</option>' for t in tunnels)
    add_form = (
        f'<form method="post" action="{base}/routes" id="add-route">{_hidden(csrf)}'
        f'<select name="tunnel" required>{options}</select> '
        '<input name="hostname" placeholder="app.example.com" required> '
        '<label><input type="checkbox" name="overwrite" value="true"> replace an existing route</label> '
        '<button type="submit">Add route</button></form>'
        if tunnels else '<p class="muted">Create a tunnel first: <code>burrow tunnel create NAME</code>.</p>'
    )
    body = f"""<header><h1>Burrow · {escape(account)}</h1>
{_button(base, csrf, '/logout', 'Log out', {})}</header>
<main>
{messages}
<div id="live" data-src="{base}/live" data-refresh="{refresh:g}">{live_html}</div>
<section id="routes"><h2>Routes</h2>
<table><tr><th>Hostname</th><th>Tunnel</th><th>CNAME target</th><th></th></tr>{route_rows}</table>
{add_form}
</section>
</main>
<script src="{base}/static/dashboard.js"></script>"""
    return page(base, account, body)


def live_fragment(base: str, csrf: str, tunnels: Sequence[TunnelView], traffic: dict[str, Series]) -> str:
    """The part of the overview the page re-fetches: tunnels, sessions and the traffic charts."""
    return _tunnels_section(base, csrf, tunnels) + _traffic_section(traffic)


def _tunnels_section(base: str, csrf: str, tunnels: Sequence[TunnelView]) -> str:
    if not tunnels:
        return '<section id="tunnels"><h2>Tunnels</h2><p class="muted">No tunnels.</p></section>'
    parts = ['<section id="tunnels"><h2>Tunnels</h2>']
    for view in tunnels:
        t = view.tunnel
        hosts = ", ".join(f"<code>{escape(h)}</code>" for h in view.hostnames) or '<span class="muted">no hostnames</span>'
        parts.append(
            f'<div class="tunnel" data-tunnel="{escape(t.name)}" data-connections="{len(view.connections)}">'
            f"<h3>{escape(t.name)} <small class=\"muted\"><code>{escape(t.id)}</code></small></h3>"
            f"<p><strong class=\"connection-count\">{len(view.connections)}</strong> live connection"
            f"{'' if len(view.connections) == 1 else 's'} · {hosts}</p>"
        )
        by_connector: dict[str, list[Connection]] = {}
        for conn in view.connections:
            by_connector.setdefault(conn.connector_id, []).append(conn)
        if by_connector:
            parts.append(
                "<table><tr><th>Connector</th><th>Session</th><th>From</th><th>Version</th>"
                "<th>Since</th><th></th></tr>"
            )
            for connector_id, conns in by_connector.items():
                button = _button(
                    base, csrf, "/connectors/disconnect", "Disconnect",
                    {"tunnel": t.id, "connector": connector_id}, "close this connector's sessions",
                )
                for i, conn in enumerate(sorted(conns, key=lambda c: c.conn_index)):
                    parts.append(
                        f'<tr class="session"><td><code>{escape(connector_id[:8])}</code></td>'
                        f"<td>#{conn.conn_index}</td><td>{escape(conn.source)}</td>"
                        f"<td>{escape(conn.client_version)}</td><td>{escape(conn.connected_at)}</td>"
                        f"<td>{button if i == 0 else ''}</td></tr>"
                    )
            parts.append("</table>")
        parts.append(_pools_table(view.pools))
        if view.stale:
            parts.append(
                f'<p class="muted">{view.stale} stale connection record(s) from an earlier edge run '
                f"{_button(base, csrf, '/tunnels/cleanup', 'Clean up', {'tunnel': t.id})}</p>"
            )
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _pools_table(pools: Sequence[ConnectorPools]) -> str:
    """Each connector's origin pools: one row per origin, or why the connector's state is unknown."""
    if not any(answer.report is None or answer.report.pools for answer in pools):
        return ""
    rows = []
    for answer in pools:
        connector = f"<td><code>{escape(answer.connector_id[:8])}</code></td>"
        if answer.report is None:
            rows.append(f'<tr class="pool-unknown">{connector}<td colspan="7" class="muted">{escape(answer.error)}</td></tr>')
            continue
        for pool in answer.report.pools:
            checks = "" if pool.checked else ' <span class="muted">(no health check)</span>'
            for origin in pool.origins:
                state = "healthy" if origin.healthy else "unhealthy"
                rows.append(
                    f'<tr class="pool-origin" data-pool="{escape(pool.name)}" data-origin="{escape(origin.url)}" '
                    f'data-healthy="{str(origin.healthy).lower()}">{connector}'
                    f"<td>{escape(pool.name)}{checks}</td><td>{escape(pool.policy)}</td><td><code>{escape(origin.url)}</code></td>"
                    f'<td class="{state}">{state}</td><td>{origin.in_flight}</td><td>{origin.requests}</td>'
                    f"<td>{_last_check(origin.last_check, origin.checked_at, origin.checks_failed)}</td></tr>"
                )
        if answer.report.truncated:
            rows.append(f'<tr>{connector}<td colspan="7" class="muted">more pools than fit in one answer</td></tr>')
    return (
        '<table class="pools"><caption>Origin pools</caption><tr><th>Connector</th><th>Pool</th><th>Policy</th><th>Origin</th><th>State</th>'
        f"<th>In flight</th><th>Requests</th><th>Last check</th></tr>{''.join(rows)}</table>"
    )


def _last_check(passed: bool | None, at: float | None, failed: int) -> str:
    if passed is None or at is None:
        return '<span class="muted">none yet</span>'
    when = datetime.fromtimestamp(at, timezone.utc).strftime("%H:%M:%S UTC")
    return f"{'passed' if passed else 'failed'} at {when} ({failed} failed in all)"


def _traffic_section(traffic: dict[str, Series]) -> str:
    if not traffic:
        body = '<p class="muted">Route a hostname to see its traffic.</p>'
    else:
        body = '<div class="charts">' + "".join(chart(host, s) for host, s in sorted(traffic.items())) + "</div>"
    return f'<section id="traffic"><h2>Requests per minute, last hour</h2>{body}</section>'


def chart(host: str, series: Series) -> str:
    """An inline SVG bar chart: requests per minute in blue, 5xx errors in red over them."""
    total, errors = sum(series.requests), sum(series.errors)
    peak = max(series.requests)
    scale = max(peak, 1)
    bar = CHART_WIDTH / MINUTES
    bars = []
    for i, (n, e) in enumerate(zip(series.requests, series.errors)):
        x = f"{i * bar:.1f}"
        for count, cls in ((n, "req"), (e, "err")):
            if count:
                height = max(1.0, count / scale * (CHART_HEIGHT - 2))
                bars.append(
                    f'<rect class="{cls}" x="{x}" y="{CHART_HEIGHT - height:.1f}" '
                    f'width="{bar - 1:.1f}" height="{height:.1f}"></rect>'
                )
    last = series.requests[-1]
    return (
        f'<figure class="chart" data-host="{escape(host)}" data-requests="{total}" data-errors="{errors}">'
        f'<svg width="{CHART_WIDTH}" height="{CHART_HEIGHT}" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" '
        f'role="img" aria-label="requests per minute to {escape(host)}">'
        f'<line class="axis" x1="0" y1="{CHART_HEIGHT - 0.5}" x2="{CHART_WIDTH}" y2="{CHART_HEIGHT - 0.5}"></line>'
        f'{"".join(bars)}</svg>'
        f"<figcaption><code>{escape(host)}</code>: {total} requests, {errors} errors (5xx) in the last hour; "
        f"{last / 60:.2f} req/s this minute; peak {peak}/min</figcaption></figure>"
    )
