"""`burrow`: manage and run tunnels from behind NAT (cloudflared's command surface)."""

from __future__ import annotations

import dataclasses
import logging
import signal
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import trio
import typer

from connector.access import cli as access_cli
from connector.access.verifier import AccessVerifier
from connector.egress.proxies import choose
from connector.ingress.rules import Ingress
from connector.management import service
from connector.management.cli import tunnel_app
from connector.management.credentials import credentials_path
from connector.management.quick import edge_and_ca, request_quick_tunnel, url_box
from connector.origins.balancer import Balancers
from connector.origins.private import PrivateDialer
from connector.tunnel.connection import DialLimits
from connector.tunnel.metrics import ConnectorMetrics
from connector.tunnel.reload import Reloader
from connector.tunnel.streams import StreamServer
from connector.tunnel.supervisor import Supervisor
from shared import logs
from shared.aio import single_errors, wait_for_signal
from shared.commands import examples, package_version, reported_errors
from shared.config import ConnectorConfig, load_connector_config
from shared.credentials import load_credentials
from shared.errors import AuthError, ConfigError
from shared.metrics import MetricsServer
from shared.tunnel_token import decode_token
from shared.values import burrow_home, parse_duration
from shared.values import parse_hostport as _listen_address

log = logging.getLogger("connector")

app = typer.Typer(help="Burrow connector: publish local services through your edge.", pretty_exceptions_show_locals=False, no_args_is_help=True)
ingress_app = typer.Typer(help="Check ingress rules offline.", no_args_is_help=True)
app.add_typer(tunnel_app, name="tunnel")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"burrow version {package_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Burrow connector: publish local services through your edge."""
tunnel_app.add_typer(ingress_app, name="ingress")

DEFAULT_HA_CONNECTIONS = 4
DEFAULT_GRACE_PERIOD = 30.0
NO_RULES = ({"service": "http_status:503"},)


@ingress_app.command("validate", epilog=examples("burrow tunnel ingress validate --config ~/.burrow/config.yml"))
def ingress_validate(config: Path = typer.Option(None, help="config.yml to check.")) -> None:
    """Check the ingress rules of a config file."""
    with reported_errors():
        cfg = _load_config(config)
        for key in cfg.extra:
            typer.echo(f"warning: unknown key {key!r} is ignored", err=True)
        try:
            ingress = _ingress(cfg, config or _default_config())
        except ConfigError as exc:  # an IngressError lists every problem, one per line
            for warning in getattr(exc, "warnings", []):
                typer.echo(f"warning: {warning}", err=True)
            for problem in getattr(exc, "problems", [str(exc)]):
                typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(exc.exit_code) from None
        for warning in (*ingress.warnings, *ingress.file_problems):  # a file matters only to `tunnel run`
            typer.echo(f"warning: {warning}", err=True)
        typer.echo("OK")


@ingress_app.command("rule", epilog=examples("burrow tunnel ingress rule https://app.example.com/api/users"))
def ingress_rule(url: str = typer.Argument(..., help="URL (or host/path) to match."), config: Path = typer.Option(None, help="config.yml to check.")) -> None:
    """Show which ingress rule a URL matches."""
    with reported_errors():
        cfg = _load_config(config)
        parts = urlsplit(url if "://" in url else f"https://{url}")
        host, path = parts.netloc.rpartition("@")[2], parts.path or "/"
        rule = _ingress(cfg, config or _default_config()).match(host, path)
        typer.echo(f"Matched rule #{rule.index}")
        if rule.hostname:
            typer.echo(f"\thostname: {rule.hostname}")
        if rule.path is not None:
            typer.echo(f"\tpath: {rule.path.pattern}")
        typer.echo(f"\tservice: {rule.service}")
        typer.echo(f"\twhy: {rule.explain(host, path)}")


@tunnel_app.callback(invoke_without_command=True, epilog=examples(
    "burrow tunnel --url http://localhost:8000 --edge https://203.0.113.10", "burrow tunnel --url http://localhost:8000 --edge https://edge.example.com:8443 --ca-file ca.pem",
))
def quick(
    ctx: typer.Context,
    url: str = typer.Option(None, "--url", help="Quick tunnel: no login; the edge names it https://WORD-WORD-WORD.quick.ZONE and sends every request to this origin."),
    edge: str = typer.Option(None, "--edge", help="The edge's URL, https://HOST[:PORT] (default: the edge of `burrow tunnel login`)."),
    ca_file: Path = typer.Option(None, "--ca-file", help="PEM file of the edge's CA, if it is private (dev CA)."),
    edge_bind_address: str = typer.Option(None, "--edge-bind-address", help="Local address to reach the edge from (the edge counts quick tunnels per source address)."),
    log_level: str = typer.Option("info", "--loglevel", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Create, route and run tunnels; with --url alone, run a quick tunnel until SIGINT/SIGTERM."""
    if ctx.invoked_subcommand is not None:
        if url is not None or edge is not None or ca_file is not None or edge_bind_address is not None or log_level != "info":
            with reported_errors():
                raise ConfigError(f"--url, --edge, --ca-file, --edge-bind-address and --loglevel before a subcommand start a quick tunnel; `tunnel {ctx.invoked_subcommand}` takes its own options after its name")
        return
    if url is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()
    with reported_errors():
        ingress = _ingress(ConnectorConfig(ingress=({"service": url},)), Path("--url")).require_files()
        creds, public_url = request_quick_tunnel(*edge_and_ca(edge, ca_file), edge_bind_address)
        logs.configure(log_level, None, "text", None, logs.CONNECTOR_ACCESS_LOGGER)
        typer.echo(url_box(public_url))
        server = StreamServer(ingress, access=AccessVerifier(creds))
        supervisor = Supervisor(creds, server.serve, DEFAULT_HA_CONNECTIONS, limits=DialLimits(local_address=edge_bind_address))
        log.info("tunnel.starting quick=%s tunnel=%s connections=%d edge=%s", public_url, creds.tunnel_id, DEFAULT_HA_CONNECTIONS, creds.endpoint)
        try:
            with single_errors():
                trio.run(_run_until_signalled, supervisor, DEFAULT_GRACE_PERIOD, None, None, server.balancers)
        except AuthError as exc:  # the edge forgot the quick tunnel: it restarted, or the connector was away past the grace
            raise AuthError(f"{exc}; the quick tunnel {public_url} is gone (the edge restarted, or this connector was away"
                            " longer than the edge's grace): run `burrow tunnel --url` again for a new one") from None


@tunnel_app.command(epilog=examples("burrow tunnel run my-web-tunnel", "burrow tunnel run --url http://localhost:8080 my-web-tunnel", 'burrow tunnel run --token "$TUNNEL_TOKEN" --metrics 127.0.0.1:2000 --log-format json'))
def run(
    tunnel: str = typer.Argument(None, help="Tunnel name or UUID (default: `tunnel` in config.yml)."),
    config: Path = typer.Option(None, help="config.yml (default: $BURROW_HOME/config.yml)."),
    credentials_file: Path = typer.Option(None, help="credentials.json (default: from config or NAME)."),
    ha_connections: int = typer.Option(None, min=1, max=16, help="Connections to the edge (default 4)."),
    grace_period: float = typer.Option(DEFAULT_GRACE_PERIOD, help="Seconds to let requests finish on SIGTERM."),
    heartbeat_interval: str = typer.Option("10s", help="How often to PING the edge on each connection (duration, e.g. 5s)."),
    heartbeat_timeout: str = typer.Option("15s", help="Replace a connection whose PING is not answered within this."),
    log_level: str = typer.Option("info", "--loglevel", "--log-level", help="debug, info, warning or error."),
    logfile: Path = typer.Option(None, "--logfile", help="Append the log to this file instead of stderr."),
    log_format: str = typer.Option("text", "--log-format", help="text (key=value lines) or json (one object a line)."),
    access_log: str = typer.Option(
        None, "--access-log", help="Where the access log (one line a request) goes: off, or a file; default: with the log."
    ),
    token: str = typer.Option(None, "--token", envvar="BURROW_TUNNEL_TOKEN", help="Tunnel token from `burrow tunnel token` (no files needed)."),
    url: str = typer.Option(None, "--url", help="Send every request to this origin (only without ingress rules)."),
    metrics: str = typer.Option(None, "--metrics", help="HOST:PORT to serve /metrics, /ready and /healthcheck on (off by default)."),
    proxy: str = typer.Option(
        None, "--proxy", help="Reach the edge through this proxy: http://[USER:PASSWORD@]HOST:PORT or socks5://HOST:PORT "
        "(default: `proxy` in config.yml, else $HTTPS_PROXY / $ALL_PROXY; $NO_PROXY exempts hosts).",
    ),
) -> None:
    """Run a tunnel: connect to the edge and serve requests until SIGINT/SIGTERM."""
    with reported_errors():
        logs.configure(log_level, logfile, log_format, access_log, logs.CONNECTOR_ACCESS_LOGGER)
        logs.log_native_cores(log)
        metrics_listen = _listen_address(metrics) if metrics is not None else None
        token_creds = decode_token(token) if token is not None else None
        cfg = _load_config(config)
        for key in cfg.extra:
            log.warning("config.unknown_key key=%s", key)
        egress = choose(proxy, cfg.proxy, str(config or _default_config()))
        if url is not None:
            if cfg.ingress:
                raise ConfigError("--url cannot be combined with ingress rules in the config file")
            cfg = dataclasses.replace(cfg, ingress=({"service": url},))
        ingress = _ingress(cfg, Path("--url") if url is not None else config or _default_config()).require_files()
        if token_creds is not None:
            if tunnel is not None or credentials_file is not None:
                raise ConfigError("--token already names the tunnel; drop the NAME / --credentials-file")
            creds = token_creds
        else:
            creds_path = credentials_path(tunnel or cfg.tunnel, credentials_file or cfg.credentials_file)
            creds = load_credentials(creds_path)
            named = tunnel or cfg.tunnel
            if named and named not in (creds.tunnel_id, creds.tunnel_name):
                raise ConfigError(
                    f"{creds_path} holds the credentials of tunnel '{creds.tunnel_name or creds.tunnel_id}', not '{named}'"
                )
        connections = ha_connections or cfg.ha_connections or DEFAULT_HA_CONNECTIONS
        for warning in ingress.warnings:
            log.warning("config.warning %s", warning)
        connector_metrics = ConnectorMetrics()
        server = StreamServer(  # request metrics only when served: otherwise the request path skips them
            ingress, access=AccessVerifier(creds, egress), metrics=connector_metrics if metrics_listen is not None else None,
            private=PrivateDialer(cfg.warp_routing),
        )

        source = config or _default_config()
        watched = source if url is None and source.exists() else None
        reloader = Reloader(watched, lambda: _ingress(_load_config(source), source).require_files(), server)
        limits = DialLimits(
            ping_interval=_positive_duration("--heartbeat-interval", heartbeat_interval),
            ping_timeout=_positive_duration("--heartbeat-timeout", heartbeat_timeout),
        )
        supervisor = Supervisor(
            creds, server.serve, connections, limits=limits, metrics=connector_metrics,
            warp_routing=cfg.warp_routing.enabled, egress=egress,
        )
        edge_proxy = egress.for_host(_listen_address(creds.endpoint)[0])
        log.info(
            "tunnel.starting tunnel=%s connections=%d edge=%s proxy=%s",
            creds.tunnel_id, connections, creds.endpoint, edge_proxy or "none",
        )
        trio.run(_run_until_signalled, supervisor, grace_period, reloader, metrics_listen, server.balancers)


async def _run_until_signalled(
    supervisor: Supervisor, grace: float, reloader, metrics_listen, balancers: Balancers
) -> None:
    async with trio.open_nursery() as nursery:
        if metrics_listen is not None:  # up before the first session, so /ready can say 503 until then
            await nursery.start(MetricsServer(supervisor.metrics.registry, partial(_ready, supervisor)).serve, metrics_listen)
        nursery.start_soon(balancers.run)  # the pools' health checks
        nursery.start_soon(supervisor.run)
        if reloader is not None:  # SIGHUP and config.yml changes swap the ingress rules
            nursery.start_soon(reloader.run)
        await wait_for_signal(signal.SIGINT, signal.SIGTERM)
        log.info("tunnel.draining grace=%.0fs", grace)
        await supervisor.drain(grace)
        nursery.cancel_scope.cancel()


def _positive_duration(flag: str, text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ConfigError(f"{flag} must be a positive duration, not {text!r}")
    return seconds


def _ready(supervisor: Supervisor) -> tuple[bool, dict]:
    """/ready: 200 while at least one session is registered (cloudflared's readiness body)."""
    count = len(supervisor.connections)
    return count > 0, {"readyConnections": count, "connectorId": supervisor.connector_id}


service_app = typer.Typer(help="Run tunnels as systemd services (burrow-tunnel@NAME).", no_args_is_help=True)
app.add_typer(service_app, name="service")
app.add_typer(access_cli.access_app, name="access")
RootOption = typer.Option(Path("/"), "--root", hidden=True, help="Install under this directory instead of / (tests).")


@service_app.command("install", epilog=examples("sudo burrow service install --config ~/.burrow/config.yml"))
def service_install(
    config: Path = typer.Option(None, help="config.yml to install (default: $BURROW_HOME/config.yml)."),
    tunnel: str = typer.Option(None, "--tunnel", help="Tunnel name or UUID (default: `tunnel` in the config)."),
    root: Path = RootOption,
) -> None:
    """Install burrow-tunnel@NAME: the hardened template unit, /etc/burrow/NAME.yml and NAME.json; start it."""
    with reported_errors():
        layout = service.Layout(root)
        service.check_privileges(layout)
        source = Path(config).expanduser() if config is not None else _default_config()
        if not source.exists():
            raise ConfigError(f"{source} does not exist; give the tunnel's config.yml with --config")
        cfg = load_connector_config(source)
        _ingress(cfg, source).require_files()  # a config that could not run is refused now, not at boot
        named = tunnel or cfg.tunnel
        creds_path = credentials_path(named, cfg.credentials_file)
        creds = load_credentials(creds_path)
        if named and named not in (creds.tunnel_id, creds.tunnel_name):
            raise ConfigError(f"{creds_path} holds the credentials of tunnel '{creds.tunnel_name or creds.tunnel_id}', not '{named}'")
        name = creds.tunnel_name if service.INSTANCE_NAME.fullmatch(creds.tunnel_name or "") else creds.tunnel_id
        outcome = service.install(layout, name, source, creds_path, service.default_binary())
        _report_service(outcome, f"Installed burrow-tunnel@{name}")


@service_app.command("uninstall", epilog=examples("sudo burrow service uninstall --tunnel my-web-tunnel"))
def service_uninstall(
    tunnel: str = typer.Option(None, "--tunnel", help="Only this tunnel's service (default: every installed one)."),
    root: Path = RootOption,
) -> None:
    """Stop, disable and remove burrow-tunnel@NAME (every installed tunnel without --tunnel)."""
    with reported_errors():
        layout = service.Layout(root)
        service.check_privileges(layout)
        _report_service(service.uninstall(layout, tunnel), "Uninstalled")


def _report_service(outcome: service.Outcome, done: str) -> None:
    if outcome.written or outcome.removed:
        typer.echo(done)
    for path in outcome.written:
        typer.echo(f"  wrote {path}")
    for path in outcome.removed:
        typer.echo(f"  removed {path}")
    for command in outcome.ran:
        typer.echo(f"  ran {' '.join(command)}")
    for note in outcome.notes:
        typer.echo(f"note: {note}", err=True)
    if outcome.to_run:
        typer.echo("systemd is not running here (or --root is not /); to start the service, run:")
        for command in outcome.to_run:
            typer.echo(f"  sudo {' '.join(command)}")


def _default_config() -> Path:
    return burrow_home() / "config.yml"


def _load_config(path: Path | None) -> ConnectorConfig:
    if path is None:
        path = _default_config()
        if not path.exists():
            return ConnectorConfig()
    return load_connector_config(path)


def _ingress(cfg: ConnectorConfig, source: Path) -> Ingress:
    if not cfg.ingress and not (cfg.tcp or cfg.udp):
        log.warning("config.no_ingress every request will get 503")
    return Ingress.from_rules(
        cfg.ingress or NO_RULES, cfg.origin_request, source=str(source), raw_pools=cfg.pools, raw_tcp=cfg.tcp, raw_udp=cfg.udp
    )
