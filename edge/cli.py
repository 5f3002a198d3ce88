"""`burrow-edge`: set up and run the edge on a VPS."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio
import typer

from edge import server
from edge.certs import create_dev_ca
from edge.registry import Registry
from shared import logs
from shared.aio import wait_for_signal
from shared.commands import reported_errors
from shared.config import (
    DEFAULT_DNS_LISTEN,
    DEFAULT_HTTPS_LISTEN,
    DEFAULT_TUNNEL_LISTEN,
    EDGE_CONFIG_NAME,
    EdgeConfig,
    format_hostport,
    load_edge_config,
    parse_hostport,
    validate_ip,
    validate_zone,
    write_edge_config,
)
from shared.errors import ConfigError

app = typer.Typer(help="Burrow edge: public HTTPS, DNS and tunnel endpoint.", pretty_exceptions_show_locals=False, no_args_is_help=True)
account_app = typer.Typer(help="Manage accounts that may create tunnels.", no_args_is_help=True)
app.add_typer(account_app, name="account")


@app.callback()
def _private_files() -> None:
    """Every file the edge writes (registry, WAL, keys) is readable by its user only."""
    os.umask(0o077)


HomeOption = typer.Option(
    Path("/var/lib/burrow-edge"), "--home", envvar="BURROW_EDGE_HOME", help="The edge's state directory."
)


@app.command()
def init(
    zone: list[str] = typer.Option(..., help="A DNS zone the edge serves, e.g. example.com (repeatable)."),
    public_ip: list[str] = typer.Option(..., help="An address visitors and connectors reach the edge on (repeatable: IPv4 and IPv6)."),
    dev_ca: bool = typer.Option(False, "--dev-ca", help="Make a private CA and certificates for the zone."),
    https_listen: str = typer.Option(format_hostport(DEFAULT_HTTPS_LISTEN), help="HOST:PORT for HTTPS."),
    tunnel_listen: str = typer.Option(format_hostport(DEFAULT_TUNNEL_LISTEN), help="HOST:PORT for connectors."),
    dns_listen: str = typer.Option(format_hostport(DEFAULT_DNS_LISTEN), help="HOST:PORT for DNS."),
    home: Path = HomeOption,
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
            dns_listen=parse_hostport(dns_listen),
            home=home,
        )
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if dev_ca:
            create_dev_ca(home, cfg.zones, cfg.public_ips)
        Registry.open(cfg.registry_path).close()
        write_edge_config(cfg)
        typer.echo(f"Initialized the edge for {', '.join(cfg.zones)} in {home}")
        if dev_ca:
            typer.echo(f"Dev CA certificate (give it to connectors and clients): {cfg.ca_path}")
        else:
            typer.echo(f"Put certificates as NAME.pem + NAME.key into {cfg.certs_dir}")


@app.command()
def serve(
    home: Path = HomeOption,
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run the edge until SIGINT or SIGTERM."""
    logs.configure(log_level)
    with reported_errors():
        cfg = load_edge_config(home)
        trio.run(_serve_until_signalled, cfg)


async def _serve_until_signalled(cfg: EdgeConfig) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, cfg)
        await wait_for_signal(signal.SIGINT, signal.SIGTERM)
        nursery.cancel_scope.cancel()


def _registry(home: Path) -> Registry:
    return Registry.open(load_edge_config(home).registry_path)


@account_app.command("create")
def account_create(name: str, home: Path = HomeOption) -> None:
    """Create an account; its login token is printed once, alone on the last line."""
    with reported_errors():
        registry = _registry(home)
        try:
            account, token = registry.create_account(name)
        finally:
            registry.close()
        typer.echo(f"Created account {account.name} ({account.id}). Its login token, shown only once:")
        typer.echo(token)


@account_app.command("list")
def account_list(home: Path = HomeOption) -> None:
    """List active accounts."""
    with reported_errors():
        registry = _registry(home)
        try:
            for account in registry.list_accounts():
                typer.echo(f"{account.id}  {account.name}  {account.created_at}")
        finally:
            registry.close()


@account_app.command("revoke")
def account_revoke(name: str, home: Path = HomeOption) -> None:
    """Revoke an account: its login token stops working at once and its tunnels can no longer
    (re)connect; connectors already connected keep serving until they disconnect."""
    with reported_errors():
        registry = _registry(home)
        try:
            registry.revoke_account(name)
        finally:
            registry.close()
        typer.echo(f"Revoked account {name}")
