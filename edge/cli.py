"""`burrow-edge`: set up and run the edge on a VPS."""

from __future__ import annotations

import logging
import os
import signal
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import trio
import typer

from edge import privileges, server
from edge.certs.cli import acme_settings, cert_app
from edge.certs.files import create_dev_ca
from edge.registry.policy import format_size, parse_size
from edge.registry.ports import DEFAULT_MAX_PER_ACCOUNT as DEFAULT_MAX_PORTS_PER_ACCOUNT
from edge.registry.store import Registry
from edge.routing.metrics import EdgeMetrics
from edge.routing.router import DEFAULT_MAX_STREAMS_PER_TUNNEL
from edge.tunnels import quick
from edge.tunnels.ratelimit import DEFAULT_BURST, DEFAULT_RATE
from edge.visitors.connections import DEFAULT_MAX_CONNECTIONS_PER_IP
from edge.visitors.http1 import Http1Limits
from edge.visitors.https import FrontendOptions
from edge.visitors.udp_port import FlowLimits
from edge.workers.supervisor import supervise
from shared import logs
from shared.commands import examples, package_version, reported_errors
from shared.edge_config import (
    DATABASE_URL_ENV,
    DEFAULT_DNS_LISTEN,
    DEFAULT_HTTPS_LISTEN,
    DEFAULT_TUNNEL_LISTEN,
    EDGE_CONFIG_NAME,
    EdgeConfig,
    check_port_ranges,
    load_edge_config,
    parse_port_range,
    validate_database_url,
    validate_edge_name,
    validate_ip,
    validate_zone,
    write_edge_config,
)
from shared.errors import ConfigError
from shared.metrics import MetricsServer
from shared.output import check_output, structured, table
from shared.values import format_hostport, parse_duration, parse_hostport, parse_listen_or_off

log = logging.getLogger("edge")

app = typer.Typer(help="Burrow edge: public HTTPS, DNS and tunnel endpoint.", pretty_exceptions_show_locals=False, no_args_is_help=True)
account_app = typer.Typer(help="Manage accounts that may create tunnels.", no_args_is_help=True)
app.add_typer(account_app, name="account")
app.add_typer(cert_app, name="cert")
edges_app = typer.Typer(help="The edges sharing this edge's registry (docs/scaling.md).", no_args_is_help=True)
app.add_typer(edges_app, name="edges")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"burrow-edge version {package_version()}")
        raise typer.Exit()


@app.callback()
def _private_files(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Every file the edge writes (registry, WAL, keys) is readable by its user only."""
    os.umask(0o077)


MAX_WORKERS = 64  # `burrow-edge serve --workers`

HomeOption = typer.Option(
    Path("/var/lib/burrow-edge"), "--home", envvar="BURROW_EDGE_HOME", help="The edge's state directory."
)


@app.command(epilog=examples("burrow-edge init --zone example.com --public-ip 203.0.113.10", "burrow-edge init --zone example.test --public-ip 127.0.0.1 --dev-ca --home ./edge-home"))
def init(
    zone: list[str] = typer.Option(..., help="A DNS zone the edge serves, e.g. example.com (repeatable)."),
    public_ip: list[str] = typer.Option(..., help="An address visitors and connectors reach the edge on (repeatable: IPv4 and IPv6)."),
    dev_ca: bool = typer.Option(False, "--dev-ca", help="Make a private CA and certificates for the zone."),
    https_listen: str = typer.Option(format_hostport(DEFAULT_HTTPS_LISTEN), help="HOST:PORT for HTTPS."),
    tunnel_listen: str = typer.Option(format_hostport(DEFAULT_TUNNEL_LISTEN), help="HOST:PORT for connectors."),
    dns_listen: str = typer.Option(format_hostport(DEFAULT_DNS_LISTEN), help="HOST:PORT for DNS, or off: no DNS server (the zone's DNS is hosted elsewhere)."),
    home: Path = HomeOption,
    http_listen: str = typer.Option(None, help="HOST:PORT for plain HTTP: ACME HTTP-01 answers, else a redirect to HTTPS."),
    acme_directory: str = typer.Option(None, help="ACME directory URL: get certificates from this CA (see docs/certificates.md)."),
    acme_email: str = typer.Option(None, help="Contact e-mail for the ACME account."),
    acme_ca_file: Path = typer.Option(None, help="PEM CA to trust for the ACME server's own TLS certificate."),
    tcp_ports: str = typer.Option(None, "--tcp-ports", help="LO-HI: public TCP ports tunnels may reserve with `burrow tunnel route tcp` (none by default)."),
    udp_ports: str = typer.Option(None, "--udp-ports", help="LO-HI: public UDP ports tunnels may reserve with `burrow tunnel route udp` (none by default)."),
    database: str = typer.Option(
        None, "--database", envvar=DATABASE_URL_ENV,
        help="postgresql://USER@HOST/DB: keep the registry in PostgreSQL, shared by several edges (docs/scaling.md); default: SQLite in the home.",
    ),
    edge_name: str = typer.Option(None, "--edge-name", help="This edge's name among several (default: the host name)."),
) -> None:
    """Create the edge's config, registry and (with --dev-ca) certificates."""
    with reported_errors():
        if (home / EDGE_CONFIG_NAME).exists():
            raise ConfigError(f"{home / EDGE_CONFIG_NAME} exists already; this edge is initialized")
        cfg = EdgeConfig(
            zones=tuple(dict.fromkeys(validate_zone(name) for name in zone)),
            public_ips=tuple(dict.fromkeys(validate_ip(ip) for ip in public_ip)),
            https_listen=parse_hostport(https_listen),
            tunnel_listen=parse_hostport(tunnel_listen),
            dns_listen=parse_listen_or_off(dns_listen),
            home=home,
            **acme_settings(http_listen, acme_directory, acme_email, acme_ca_file, dev_ca),
            tcp_ports=parse_port_range(tcp_ports) if tcp_ports is not None else None,
            udp_ports=parse_port_range(udp_ports) if udp_ports is not None else None,
            database=None if database is None else validate_database_url(database),
            edge_name=None if edge_name is None else validate_edge_name(edge_name),
        )
        server.check_dns_off(cfg)
        check_port_ranges(cfg)
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if dev_ca:
            create_dev_ca(home, cfg.zones, cfg.public_ips)
        Registry.open(cfg.registry).close()
        write_edge_config(cfg)
        typer.echo(f"Initialized the edge for {', '.join(cfg.zones)} in {home}")
        for kind, ports in (("TCP", cfg.tcp_ports), ("UDP", cfg.udp_ports)):
            if ports is not None:
                typer.echo(f"Public {kind} ports {ports} may be reserved by tunnels (`burrow tunnel route {kind.lower()}`)")
        if dev_ca:
            typer.echo(f"Dev CA certificate (give it to connectors and clients): {cfg.ca_path}")
        elif cfg.acme_directory:
            typer.echo(f"Certificates for {', '.join(f'*.{z} and {z}' for z in cfg.zones)} will come from {cfg.acme_directory} when the edge starts")
        else:
            typer.echo(f"Add certificates with `burrow-edge cert add --home {home} CERT.pem KEY.pem` (docs/certificates.md)")


@app.command(epilog=examples("burrow-edge serve", "burrow-edge serve --metrics 127.0.0.1:9100 --access-log /var/log/burrow-edge/access.log", "burrow-edge serve --log-format json --access-log off"))
def serve(
    home: Path = HomeOption,
    log_level: str = typer.Option("info", "--loglevel", "--log-level", help="debug, info, warning or error."),
    logfile: Path = typer.Option(None, "--logfile", help="Append the log to this file instead of stderr."),
    log_format: str = typer.Option("text", "--log-format", help="text (key=value lines) or json (one object a line)."),
    access_log: str = typer.Option(
        None, "--access-log", help="Where the access log (one line a request) goes: off, or a file; default: with the log."
    ),
    grace_period: float = typer.Option(
        server.DEFAULT_GRACE_PERIOD, min=0, help="Seconds to let in-flight requests finish on SIGTERM/SIGINT."
    ),
    heartbeat_interval: str = typer.Option("10s", help="How often to PING each tunnel session (duration, e.g. 5s)."),
    heartbeat_timeout: str = typer.Option("15s", help="Drop a session whose PING is not answered within this."),
    registration_burst: int = typer.Option(
        DEFAULT_BURST, min=1, help="Tunnel registrations one source address may make at once before it is rate limited."
    ),
    registration_rate: float = typer.Option(DEFAULT_RATE, help="Then this many registrations per second per source address."),
    metrics: str = typer.Option(None, "--metrics", help="HOST:PORT to serve /metrics, /ready and /healthcheck on (off by default)."),
    header_timeout: str = typer.Option("10s", help="Close a connection whose request head (HTTP/1.1) or header block (HTTP/2) takes longer (slowloris)."),
    keepalive_timeout: str = typer.Option("75s", help="Close an idle HTTP/1.1 keep-alive connection after this."),
    max_connections_per_ip: int = typer.Option(DEFAULT_MAX_CONNECTIONS_PER_IP, min=1, help="Concurrent visitor connections one client IP may hold."),
    hsts_max_age: str = typer.Option(None, help="Send Strict-Transport-Security with this max-age (seconds or a duration, e.g. 8760h) on every response."),
    max_streams_per_tunnel: int = typer.Option(DEFAULT_MAX_STREAMS_PER_TUNNEL, min=1, help="Concurrent requests one tunnel may carry (all its sessions); more get 503 with Retry-After."),
    max_ports_per_account: int = typer.Option(DEFAULT_MAX_PORTS_PER_ACCOUNT, min=1, help="Public TCP and UDP ports one account may reserve (`burrow tunnel route tcp|udp`); more get 409."),
    udp_idle_timeout: str = typer.Option("60s", help="End a public UDP port's flow (one visitor address and port) after this long without a datagram either way."),
    user: str = typer.Option(None, "--user", help="Start as root, bind every port, then run as this user (default: user in edge.yml; see docs/security.md)."),
    quick_tunnels: bool = typer.Option(False, "--quick-tunnels", help="Let anyone who reaches the edge run `burrow tunnel --url` without an account (docs/quick-tunnels.md)."),
    quick_grace: str = typer.Option(f"{quick.DEFAULT_GRACE:g}s", help="A quick tunnel's name stops resolving and routing this long after its last session ended."),
    quick_tunnels_per_ip: str = typer.Option(f"{quick.DEFAULT_PER_SOURCE}/h", help="Quick tunnels one source address may create per period (COUNT/PERIOD, e.g. 10/h); more get 429."),
    quick_max_streams: int = typer.Option(quick.DEFAULT_MAX_STREAMS, min=1, help="Concurrent requests one quick tunnel may carry; more get 429."),
    quick_max_body: str = typer.Option(format_size(quick.DEFAULT_MAX_BODY), help="Largest request body a quick tunnel accepts (e.g. 100m); larger get 413."),
    workers: int = typer.Option(1, "--workers", min=1, max=MAX_WORKERS, help="Worker processes sharing the listeners (SO_REUSEPORT); see docs/performance.md for when more than 1 pays."),
) -> None:
    """Run the edge until SIGINT or SIGTERM; then drain: refuse new connections, tell connectors,
    let in-flight requests finish within the grace period, exit 0. A second signal stops at once."""
    with reported_errors():
        logs.configure(log_level, logfile, log_format, access_log)
        logs.log_native_cores(log)
        cfg = load_edge_config(home)
        heartbeat = {
            "heartbeat_interval": _positive_duration("--heartbeat-interval", heartbeat_interval),
            "heartbeat_timeout": _positive_duration("--heartbeat-timeout", heartbeat_timeout),
            "registration_burst": registration_burst,
            "max_streams_per_tunnel": max_streams_per_tunnel,
            "max_ports_per_account": max_ports_per_account,
            "flow_limits": FlowLimits(idle_timeout=_positive_duration("--udp-idle-timeout", udp_idle_timeout)),
            "registration_rate": _positive_rate("--registration-rate", registration_rate),
            "http1_limits": Http1Limits(
                request_head_timeout=_positive_duration("--header-timeout", header_timeout),
                keepalive_timeout=_positive_duration("--keepalive-timeout", keepalive_timeout),
            ),
            "frontend_options": FrontendOptions(
                max_connections_per_ip=max_connections_per_ip,
                hsts_max_age=None if hsts_max_age is None else int(_positive_duration("--hsts-max-age", hsts_max_age)),
            ),
        }
        if quick_tunnels:
            per_source, window = quick.parse_per_period(quick_tunnels_per_ip)
            heartbeat["quick_tunnels"] = quick.QuickSettings(
                grace=_positive_duration("--quick-grace", quick_grace), per_source=per_source, window=window,
                max_streams=quick_max_streams, max_body=_size("--quick-max-body", quick_max_body),
            )
        metrics_listen = parse_hostport(metrics) if metrics is not None else None
        user = user if user is not None else cfg.user
        run_as = privileges.target_user(user) if user is not None else None
        if workers == 1:
            trio.run(_serve_until_signalled, cfg, grace_period, heartbeat, metrics_listen, run_as)
            return
        if cfg.acme_challenges:
            raise ConfigError("--workers above 1 cannot answer http-01 or tls-alpn-01 (acme-challenges in edge.yml): run one worker")
        _check_single_worker_features(cfg, quick_tunnels)
        start = {
            "home": str(home), "edge_id": str(uuid.uuid4()), "grace": grace_period,
            "logs": [log_level, str(logfile) if logfile else None, log_format, access_log],
            "options": {
                **heartbeat, "http1_limits": asdict(heartbeat["http1_limits"]), "frontend_options": asdict(heartbeat["frontend_options"]),
                "flow_limits": asdict(heartbeat["flow_limits"]),
            },
        }
        trio.run(supervise, cfg, workers, start, grace_period, metrics_listen, run_as)


def _check_single_worker_features(cfg: EdgeConfig, quick_tunnels: bool) -> None:
    """What one worker holds in its own memory cannot be split over several yet: refuse it."""
    held = [
        *(["--quick-tunnels"] if quick_tunnels else []),
        *(["public ports (tcp-ports/udp-ports in edge.yml)"] if cfg.tcp_ports or cfg.udp_ports else []),
        *(["a PostgreSQL registry (--database)"] if isinstance(cfg.registry, str) else []),
    ]
    if held:
        raise ConfigError(f"--workers above 1 does not support {', '.join(held)} yet: run one worker")


def _positive_rate(flag: str, rate: float) -> float:
    if rate <= 0:
        raise ConfigError(f"{flag} must be a positive number per second, not {rate:g}")
    return rate


def _size(flag: str, text: str) -> int:
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _positive_duration(flag: str, text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ConfigError(f"{flag} must be a positive duration, not {text!r}")
    return seconds


async def _serve_until_signalled(
    cfg: EdgeConfig, grace: float = server.DEFAULT_GRACE_PERIOD, heartbeat=None, metrics_listen=None, run_as=None
) -> None:
    shutdown = trio.Event()
    metrics = EdgeMetrics()
    listening: dict = {}  # filled once every listener is up: /ready answers 200 until the drain starts
    async with trio.open_nursery() as nursery:
        if metrics_listen is not None:

            def ready() -> tuple[bool, dict]:
                return bool(listening) and not shutdown.is_set(), {"listeners": listening}

            await nursery.start(MetricsServer(metrics.registry, ready).serve, metrics_listen)

        async def edge(task_status=trio.TASK_STATUS_IGNORED) -> None:
            await server.serve(cfg, shutdown=shutdown, grace_period=grace, metrics=metrics, task_status=task_status, **(heartbeat or {}))
            nursery.cancel_scope.cancel()  # drained

        addresses = await nursery.start(edge)
        if run_as is not None:  # every listener (metrics, HTTPS, tunnel, DNS, HTTP) is bound now
            privileges.drop_to(run_as, cfg.home)
        listening.update({name: format_hostport(address) for name, address in addresses.items()})
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if shutdown.is_set():  # a second signal: stop without waiting
                    nursery.cancel_scope.cancel()
                    return
                shutdown.set()


def _registry(home: Path) -> Registry:
    return Registry.open(load_edge_config(home).registry)


@account_app.command("create", epilog=examples("burrow-edge account create alice"))
def account_create(name: str = typer.Argument(..., help="Account name, e.g. alice."), home: Path = HomeOption) -> None:
    """Create an account; its login token is printed once, alone on the last line."""
    with reported_errors():
        registry = _registry(home)
        try:
            account, token = registry.create_account(name)
        finally:
            registry.close()
        typer.echo(f"Created account {account.name} ({account.id}). Its login token, shown only once:")
        typer.echo(token)


@account_app.command("list", epilog=examples("burrow-edge account list", "burrow-edge account list --output json"))
def account_list(
    home: Path = HomeOption,
    output: str = typer.Option("table", "--output", "-o", help="table, json or yaml."),
) -> None:
    """List active accounts: id, name, creation time."""
    with reported_errors():
        check_output(output)
        registry = _registry(home)
        try:
            accounts = [{"id": a.id, "name": a.name, "created_at": a.created_at} for a in registry.list_accounts()]
        finally:
            registry.close()
        if output == "table":
            typer.echo(table(("ID", "NAME", "CREATED"), [tuple(a.values()) for a in accounts]))
        else:
            typer.echo(structured(accounts, output))


@account_app.command("revoke", epilog=examples("burrow-edge account revoke alice"))
def account_revoke(name: str = typer.Argument(..., help="Account name."), home: Path = HomeOption) -> None:
    """Revoke an account: its login token stops working at once and its tunnels can no longer
    (re)connect; connectors already connected keep serving until they disconnect."""
    with reported_errors():
        registry = _registry(home)
        try:
            registry.revoke_account(name)
        finally:
            registry.close()
        typer.echo(f"Revoked account {name}")


@edges_app.command("list", epilog=examples("burrow-edge edges list", "burrow-edge edges list --output json"))
def edges_list(
    home: Path = HomeOption,
    output: str = typer.Option("table", "--output", "-o", help="table, json or yaml."),
) -> None:
    """List the edges sharing the registry: name, live or dead (no heartbeat for 15 s), public
    addresses, tunnel endpoint, sessions held, last heartbeat."""
    with reported_errors():
        check_output(output)
        registry = _registry(home)
        try:
            edges = registry.list_edges()
        finally:
            registry.close()
        rows = [
            {
                "name": e.name, "state": "live" if e.live else "dead", "public_ips": list(e.public_ips),
                "tunnel_endpoint": e.tunnel_endpoint, "sessions": e.sessions, "started_at": e.started_at,
                "heartbeat_at": datetime.fromtimestamp(e.heartbeat_at / 1000, UTC).isoformat(timespec="seconds"),
            }
            for e in edges
        ]
        if output == "table":
            typer.echo(table(
                ("NAME", "STATE", "PUBLIC IPS", "TUNNEL ENDPOINT", "SESSIONS", "HEARTBEAT"),
                [(r["name"], r["state"], ",".join(r["public_ips"]), r["tunnel_endpoint"], str(r["sessions"]), r["heartbeat_at"]) for r in rows],
            ))
        else:
            typer.echo(structured(rows, output))
