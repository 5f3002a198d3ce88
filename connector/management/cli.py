"""`burrow tunnel login|create|list|info|delete|cleanup|token` and `tunnel route dns|ip|tcp|udp`: tunnels
managed through the edge's admin API with the account credential from `tunnel login`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import typer

from connector.egress.proxies import ProxyChoice, choose
from connector.management import listing
from connector.management.credentials import credentials_path, remove_local_credentials
from connector.management.edge_api import EdgeAPI
from shared.commands import examples, reported_errors
from shared.config import load_connector_config
from shared.credentials import AccountCert, Credentials, load_account_cert, load_credentials, save_account_cert, save_credentials
from shared.crypto import mint_secret
from shared.errors import ConfigError, ConflictError
from shared.output import check_output, structured, table
from shared.tunnel_token import encode_token
from shared.values import Secret, burrow_home

tunnel_app = typer.Typer(help="Create, route and run tunnels.", no_args_is_help=True)
route_app = typer.Typer(help="Point hostnames, private networks, and public TCP and UDP ports at a tunnel.", no_args_is_help=True)
tunnel_app.add_typer(route_app, name="route")
ip_app = typer.Typer(help="Private networks (CIDRs) a tunnel serves to `burrow access socks`.", no_args_is_help=True)
route_app.add_typer(ip_app, name="ip")


def _cert_path() -> Path:
    return burrow_home() / "cert.pem"


def _api() -> EdgeAPI:
    cert = load_account_cert(_cert_path())
    return EdgeAPI(cert.edge_url, cert.api_token.value.decode(), cert.edge_ca, _egress())


def _egress() -> ProxyChoice:
    """The proxy to the edge, chosen as `tunnel run` chooses it: `proxy` in $BURROW_HOME/config.yml,
    else $HTTPS_PROXY / $ALL_PROXY, with $NO_PROXY."""
    config = burrow_home() / "config.yml"
    return choose(None, load_connector_config(config).proxy if config.exists() else None, str(config))


@tunnel_app.command(epilog=examples('burrow tunnel login https://edge.example.com --token "$TOKEN"', 'burrow tunnel login https://203.0.113.10 --token "$TOKEN" --ca-file ca.pem'))
def login(
    edge_url: str = typer.Argument(..., help="The edge's URL, e.g. https://203.0.113.10"),
    token: str = typer.Option(..., envvar="BURROW_LOGIN_TOKEN", help="The token from `burrow-edge account create`."),
    ca_file: Path = typer.Option(None, help="PEM file of the edge's CA, if it is private (dev CA)."),
) -> None:
    """Log in to an edge; writes the account credential to cert.pem (0600)."""
    with reported_errors():
        if urlsplit(edge_url).scheme != "https":
            raise ConfigError(f"edge URL {edge_url!r} must start with https://")
        ca_pem = None
        if ca_file is not None:
            try:
                ca_pem = ca_file.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read {ca_file}: {exc.strerror}") from None
        with EdgeAPI(edge_url, token, ca_pem, _egress()) as api:
            account = api.account()
        save_account_cert(_cert_path(), AccountCert(edge_url.rstrip("/"), account["id"], Secret(token.encode()), ca_pem))
        typer.echo(f"Logged in to {edge_url} as {account['name']}; credential saved to {_cert_path()}")


@tunnel_app.command(epilog=examples("burrow tunnel create my-web-tunnel"))
def create(name: str = typer.Argument(..., help="A name for the tunnel, e.g. my-web-tunnel.")) -> None:
    """Create a tunnel; prints its UUID and writes NAME/credentials.json (0600)."""
    with reported_errors():
        cert = load_account_cert(_cert_path())
        path = burrow_home() / name / "credentials.json"
        if path.exists():
            raise ConflictError(f"{path} exists already; tunnel '{name}' was created before")
        secret = mint_secret()
        with _api() as api:
            tunnel = api.create_tunnel(name, secret)
            edge_name = api.edge()["zone"]  # connectors verify the edge's certificate by its zone
        creds = Credentials(
            cert.account_id, tunnel["id"], tunnel["name"], Secret(secret), tunnel["endpoint"], cert.edge_ca, edge_name
        )
        save_credentials(path, creds)
        typer.echo(f"Created tunnel {name}; credentials written to {path}", err=True)
        typer.echo(tunnel["id"])


@tunnel_app.command("list", epilog=examples("burrow tunnel list", "burrow tunnel list --output json"))
def list_tunnels(
    output: str = typer.Option("table", "--output", "-o", help="table, json or yaml."),
) -> None:
    """List this account's tunnels: name, id, creation, live connections, hostnames."""
    with reported_errors():
        listing.check_output(output)
        with _api() as api:
            tunnels = api.list_tunnels()
        typer.echo(listing.render_list(tunnels, output))


@tunnel_app.command(epilog=examples("burrow tunnel info my-web-tunnel", "burrow tunnel info my-web-tunnel -o yaml"))
def info(
    tunnel: str = typer.Argument(..., help="Tunnel name or UUID."),
    output: str = typer.Option("table", "--output", "-o", help="table, json or yaml."),
) -> None:
    """Show a tunnel and its connectors: id, version, source, connections, edge, connected since; and their origin pools."""
    with reported_errors():
        listing.check_output(output)
        with _api() as api:
            details = api.get_tunnel(tunnel)
            connections = api.connections(details["id"])
            pools = api.pools(details["id"])
        typer.echo(listing.render_info(details, connections, output, pools))


@tunnel_app.command(epilog=examples("burrow tunnel delete my-web-tunnel", "burrow tunnel delete --force my-web-tunnel"))
def delete(
    tunnel: str = typer.Argument(..., help="Tunnel name or UUID."),
    force: bool = typer.Option(False, "--force", "-f", help="Delete even while connectors are connected; closes them."),
) -> None:
    """Delete a tunnel and its DNS routes; then remove its local credentials."""
    with reported_errors():
        with _api() as api:
            deleted = api.delete_tunnel(tunnel, force)
        removed = remove_local_credentials(deleted["name"], deleted["id"])
        typer.echo(f"Deleted tunnel {deleted['name']} ({deleted['id']})")
        if deleted.get("closed_connections"):
            typer.echo(f"Closed {deleted['closed_connections']} live connection(s)")
        if removed is not None:
            typer.echo(f"Removed {removed}")


@tunnel_app.command(epilog=examples("burrow tunnel cleanup my-web-tunnel"))
def cleanup(tunnel: str = typer.Argument(..., help="Tunnel name or UUID.")) -> None:
    """Remove a tunnel's stale connection records (left by an edge that stopped uncleanly)."""
    with reported_errors(), _api() as api:
        result = api.cleanup(tunnel)
        typer.echo(f"Removed {result['removed']} stale connection record(s) of tunnel {result['name']}")


@tunnel_app.command(epilog=examples("burrow tunnel token my-web-tunnel > my-web-tunnel.token"))
def token(
    tunnel: str = typer.Argument(..., help="Tunnel name or UUID."),
    credentials_file: Path = typer.Option(None, help="credentials.json (default: $BURROW_HOME/NAME/credentials.json)."),
) -> None:
    """Print the tunnel's token (its credentials in one string) for `tunnel run --token`; keep it secret."""
    with reported_errors():
        creds = load_credentials(credentials_path(tunnel, credentials_file))
        typer.echo(encode_token(creds))


@route_app.command("dns", epilog=examples("burrow tunnel route dns my-web-tunnel app.example.com"))
def route_dns(
    tunnel: str = typer.Argument(..., help="Tunnel name or UUID."),
    hostname: str = typer.Argument(..., help="Hostname inside the edge's zone."),
    overwrite_dns: bool = typer.Option(False, "--overwrite-dns", help="Replace a record pointing elsewhere."),
) -> None:
    """Route HOSTNAME to the tunnel with a CNAME record on the edge."""
    with reported_errors(), _api() as api:
        record = api.route_dns(tunnel, hostname, overwrite_dns)
        typer.echo(f"Added CNAME {record['hostname']} → {record['target']} (tunnel {record['tunnel_id']})")


@ip_app.command("add", epilog=examples("burrow tunnel route ip add 198.18.5.0/24 office --comment 'office LAN'"))
def route_ip_add(
    network: str = typer.Argument(..., help="CIDR of the private network, e.g. 198.18.5.0/24."),
    tunnel: str = typer.Argument(..., help="Tunnel name or UUID whose connectors (warp-routing) reach it."),
    comment: str = typer.Option("", "--comment", help="A note shown by `route ip show`."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace this account's routes that overlap NETWORK."),
) -> None:
    """Route a private network to a tunnel: `burrow access socks` flows to it go to the tunnel's connectors."""
    with reported_errors(), _api() as api:
        route = api.add_ip_route(network, tunnel, comment, overwrite)
        for replaced in route["replaced"]:
            typer.echo(f"Replaced the route of {replaced}")
        typer.echo(f"Added route {route['network']} → tunnel {route['tunnel_name']} ({route['tunnel_id']})")


@ip_app.command("show", epilog=examples("burrow tunnel route ip show", "burrow tunnel route ip show --output json"))
def route_ip_show(output: str = typer.Option("table", "--output", "-o", help="table, json or yaml.")) -> None:
    """List this account's private-network routes."""
    with reported_errors():
        check_output(output)
        with _api() as api:
            routes = api.ip_routes()
        if output != "table":
            typer.echo(structured(routes, output))
            return
        rows = [(r["network"], r["tunnel_name"], r["tunnel_id"], r["comment"], r["created_at"]) for r in routes]
        typer.echo(table(("NETWORK", "TUNNEL", "TUNNEL-ID", "COMMENT", "CREATED"), rows))


@ip_app.command("delete", epilog=examples("burrow tunnel route ip delete 198.18.5.0/24"))
def route_ip_delete(network: str = typer.Argument(..., help="The route's CIDR, as `route ip show` lists it.")) -> None:
    """Delete a private-network route."""
    with reported_errors(), _api() as api:
        deleted = api.delete_ip_route(network)
        typer.echo(f"Deleted route {deleted['network']}")


PORT_ARGS = typer.Argument(..., metavar="[delete] NAME PORT", help="Tunnel name or UUID and a port of the edge's range; with `delete` before them, release that port.")


def _route_port(protocol: str, args: list[str]) -> None:
    with reported_errors():
        delete = len(args) == 3 and args[0] == "delete"
        tunnel, port = args[1:] if delete else args if len(args) == 2 else ("", "")
        if not tunnel or not port.isdigit() or len(port) > 5:
            raise ConfigError(f"usage: burrow tunnel route {protocol} [delete] NAME PORT (PORT a number), not {' '.join(args)!r}")
        with _api() as api:
            if delete:
                route = api.remove_port(tunnel, protocol, int(port))
                typer.echo(f"Released {protocol.upper()} port {route['port']} (tunnel {route['tunnel']})")
            else:
                route = api.route_port(tunnel, protocol, int(port))
                typer.echo(f"Routed public {protocol.upper()} port {route['port']} to tunnel {route['tunnel']} ({route['tunnel_id']})")


@route_app.command("tcp", epilog=examples("burrow tunnel route tcp my-db-tunnel 20432", "burrow tunnel route tcp delete my-db-tunnel 20432"))
def route_tcp(args: list[str] = PORT_ARGS) -> None:
    """Reserve a public TCP port of the edge for the tunnel (config.yml `tcp:` says where it goes)."""
    _route_port("tcp", args)


@route_app.command("udp", epilog=examples("burrow tunnel route udp my-dns-tunnel 20053", "burrow tunnel route udp delete my-dns-tunnel 20053"))
def route_udp(args: list[str] = PORT_ARGS) -> None:
    """Reserve a public UDP port of the edge for the tunnel (config.yml `udp:` says where it goes)."""
    _route_port("udp", args)
