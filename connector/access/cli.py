"""`burrow access tcp|ssh|socks`: local ends of TCP and SSH routes and of private networks;
`burrow access token|policy|user …`: service tokens, hostname and network policies and login
users, through the edge's admin API with the account credential from `tunnel login`."""

from __future__ import annotations

import ipaddress
import re
import sys
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio
import typer

from connector.access.api import AccessAPI
from connector.access.socks import SocksEdge, SocksProxy
from connector.access.tcp import Target, parse_hostport, serve_stdio, serve_tcp
from shared import logs
from shared.commands import examples, reported_errors
from shared.credentials import load_account_cert
from shared.errors import ConfigError
from shared.values import burrow_home, parse_duration

token_app = typer.Typer(help="Service tokens: machine credentials for Access-protected hostnames.", no_args_is_help=True)
policy_app = typer.Typer(help="Per-hostname policies (IP lists, rate limits, Access) and per-network ones.", no_args_is_help=True)
user_app = typer.Typer(help="People who may sign in on Access-protected hostnames.", no_args_is_help=True)
access_app = typer.Typer(help="Reach TCP/SSH routes and private networks through the edge.", no_args_is_help=True)
access_app.add_typer(token_app, name="token")
access_app.add_typer(policy_app, name="policy")
access_app.add_typer(user_app, name="user")


def _api() -> AccessAPI:
    cert = load_account_cert(burrow_home() / "cert.pem")
    return AccessAPI(cert.edge_url, cert.api_token.value.decode(), cert.edge_ca)


@token_app.command("create", epilog=examples("burrow access token create ci"))
def token_create(name: str = typer.Argument(..., help="A name for the token, e.g. ci.")) -> None:
    """Create a service token; prints its Client-Id and Client-Secret (the secret only now)."""
    with reported_errors(), _api() as api:
        token = api.create_token(name)
        typer.echo(f"Client-Id: {token['client_id']}")
        typer.echo(f"Client-Secret: {token['client_secret']}")
        typer.echo("Keep the secret now: the edge stores only its hash and cannot show it again.", err=True)


@token_app.command("list", epilog=examples("burrow access token list"))
def token_list() -> None:
    """List this account's service tokens (names and client ids, never secrets)."""
    with reported_errors(), _api() as api:
        tokens = api.list_tokens()
        rows = [("NAME", "CLIENT-ID", "CREATED")] + [(t["name"], t["client_id"], t["created_at"]) for t in tokens]
        width = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, width)).rstrip())


@token_app.command("revoke", epilog=examples("burrow access token revoke ci"))
def token_revoke(name: str = typer.Argument(..., help="The token's name.")) -> None:
    """Revoke a service token: requests carrying it are refused."""
    with reported_errors(), _api() as api:
        api.revoke_token(name)
        typer.echo(f"Revoked service token {name}")


RATE_LIMIT_RE = re.compile(r"\d+/.+")


def _check_cidrs(values: list[str]) -> list[str]:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(f"invalid CIDR {value!r}: use e.g. 203.0.113.0/24, 198.51.100.7 or 2001:db8::/32") from None
    return values


def _check_rate_limit(text: str | None) -> str | None:
    if text is None:
        return None
    if not RATE_LIMIT_RE.fullmatch(text):
        raise ConfigError(f"invalid rate limit {text!r}: use N/WINDOW, e.g. 100/60s")
    parse_duration(text.split("/", 1)[1])
    return text


@policy_app.command("set", epilog=examples("burrow access policy set app.example.com --allow-token ci --allow-email ann@example.com", "burrow access policy set app.example.com --deny-ip 198.51.100.0/24 --rate-limit 100/60s", "burrow access policy set files.example.com --max-body 1g"))
def policy_set(
    hostname: str = typer.Argument(..., help="A hostname this account routes."),
    allow_token: list[str] = typer.Option([], "--allow-token", help="Service token NAME that passes Access (repeatable)."),
    allow_email: list[str] = typer.Option([], "--allow-email", help="Email of a user who may sign in (repeatable)."),
    allow_ip: list[str] = typer.Option([], "--allow-ip", help="Only these client CIDRs get in (repeatable)."),
    deny_ip: list[str] = typer.Option([], "--deny-ip", help="These client CIDRs are refused (repeatable)."),
    rate_limit: str = typer.Option(None, "--rate-limit", help="N/WINDOW requests per client IP, e.g. 100/60s."),
    max_body: str = typer.Option(None, "--max-body", help="Largest request body the edge lets through, e.g. 10m or 1g (bytes, k, m, g); larger gets 413."),
) -> None:
    """Replace HOSTNAME's policy. Any --allow-token/--allow-email makes it require Access."""
    with reported_errors():
        body = {
            "allow_tokens": allow_token,
            "allow_emails": allow_email,
            "allow_ips": _check_cidrs(allow_ip),
            "deny_ips": _check_cidrs(deny_ip),
            "rate_limit": _check_rate_limit(rate_limit),
            "max_body": max_body,  # checked by the edge
        }
        with _api() as api:
            shown = api.policy(hostname, "PUT", body)
        typer.echo(f"Policy of {shown['hostname']} set")
        _print_policy(shown)


@policy_app.command("show", epilog=examples("burrow access policy show app.example.com"))
def policy_show(hostname: str = typer.Argument(..., help="A hostname this account routes.")) -> None:
    """Show HOSTNAME's policy."""
    with reported_errors(), _api() as api:
        _print_policy(api.policy(hostname))


@policy_app.command("delete", epilog=examples("burrow access policy delete app.example.com"))
def policy_delete(hostname: str = typer.Argument(..., help="A hostname this account routes.")) -> None:
    """Remove HOSTNAME's policy: it is public again."""
    with reported_errors(), _api() as api:
        shown = api.policy(hostname, "DELETE")
        typer.echo(f"Deleted the policy of {shown['hostname']}")


@policy_app.command("set-network", epilog=examples("burrow access policy set-network 198.18.5.0/24 --allow-token ci"))
def policy_set_network(
    network: str = typer.Argument(..., help="A CIDR inside one of this account's `route ip` routes."),
    allow_token: list[str] = typer.Option([], "--allow-token", help="Service token NAME that may reach it through `access socks` (repeatable)."),
) -> None:
    """Replace which service tokens may reach NETWORK (the account credential always may)."""
    with reported_errors():
        _check_cidrs([network])
        with _api() as api:
            shown = api.set_network_policy(network, allow_token)
        typer.echo(f"Policy of {shown['network']} set: {', '.join(shown['allow_tokens']) or 'no service token'} allowed")


@policy_app.command("show-networks", epilog=examples("burrow access policy show-networks"))
def policy_show_networks() -> None:
    """List this account's network policies: CIDR and the service tokens it allows."""
    with reported_errors(), _api() as api:
        for network, tokens in api.network_policies().items():
            typer.echo(f"{network}: {', '.join(tokens) or '-'}")


@policy_app.command("delete-network", epilog=examples("burrow access policy delete-network 198.18.5.0/24"))
def policy_delete_network(network: str = typer.Argument(..., help="The policy's CIDR.")) -> None:
    """Remove NETWORK's policy: no service token reaches it any more."""
    with reported_errors(), _api() as api:
        shown = api.delete_network_policy(network)
        typer.echo(f"Deleted the policy of {shown['network']}")


def _print_policy(shown: dict[str, Any]) -> None:
    policy = shown["policy"]
    typer.echo(f"hostname: {shown['hostname']}")
    if policy is None:
        typer.echo("policy: none (public)")
        return
    typer.echo(f"access: {'required' if shown['access_required'] else 'not required'}")
    for key, label in [("allow_tokens", "allow-token"), ("allow_emails", "allow-email"),
                       ("allow_ips", "allow-ip"), ("deny_ips", "deny-ip")]:
        for value in policy[key]:
            typer.echo(f"{label}: {value}")
    if policy["rate_limit"]:
        typer.echo(f"rate-limit: {policy['rate_limit']}")
    if policy.get("max_body"):
        typer.echo(f"max-body: {policy['max_body']}")


@user_app.command("add", epilog=examples("burrow access user add ann@example.com", "printf '%s\\n' \"$PASSWORD\" | burrow access user add ann@example.com --password-stdin"))
def user_add(
    email: str = typer.Argument(..., help="The person's email address."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
) -> None:
    """Add a person who may sign in (or set their new password); prompts for the password."""
    with reported_errors():
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        with _api() as api:
            added = api.set_user(email, password)
        typer.echo(f"Access user {added['email']} can sign in on hostnames whose policy allows the email")


@user_app.command("list", epilog=examples("burrow access user list"))
def user_list() -> None:
    """List this account's Access users."""
    with reported_errors(), _api() as api:
        for email in api.list_users():
            typer.echo(email)


@user_app.command("remove", epilog=examples("burrow access user remove ann@example.com"))
def user_remove(email: str = typer.Argument(..., help="The person's email address.")) -> None:
    """Remove an Access user."""
    with reported_errors(), _api() as api:
        api.remove_user(email)
        typer.echo(f"Removed Access user {email}")




def _access_target(hostname: str, edge: str | None, ca_file: Path | None) -> Target:
    edge_host, edge_port = parse_hostport(edge, 443) if edge else (hostname, 443)
    return Target(hostname, edge_host, edge_port, str(ca_file) if ca_file else None)


@access_app.command("tcp", epilog=examples("burrow access tcp --hostname db.example.com --url 127.0.0.1:5432"))
def access_tcp(
    hostname: str = typer.Option(..., "--hostname", help="The TCP route's hostname."),
    url: str = typer.Option(..., "--url", help="Local HOST:PORT to listen on, e.g. 127.0.0.1:2222."),
    edge: str = typer.Option(None, "--edge", help="Edge HOST:PORT (default: HOSTNAME:443)."),
    ca_file: Path = typer.Option(None, "--ca-file", help="Extra CA (PEM) to trust for the edge."),
    log_level: str = typer.Option("info", "--loglevel", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Listen locally; carry each connection to the TCP route HOSTNAME."""
    with reported_errors():
        logs.configure(log_level)
        target = _access_target(hostname, edge, ca_file)
        listen_host, listen_port = parse_hostport(url)
        trio.run(serve_tcp, target, listen_host, listen_port)


@access_app.command("ssh", epilog=examples('ssh -o ProxyCommand="burrow access ssh --hostname %h" user@ssh.example.com'))
def access_ssh(
    hostname: str = typer.Option(..., "--hostname", help="The SSH route's hostname."),
    edge: str = typer.Option(None, "--edge", help="Edge HOST:PORT (default: HOSTNAME:443)."),
    ca_file: Path = typer.Option(None, "--ca-file", help="Extra CA (PEM) to trust for the edge."),
    log_level: str = typer.Option("warning", "--loglevel", "--log-level", help="debug, info, warning or error."),
) -> None:
    """stdin/stdout ⇄ the SSH route HOSTNAME (for `ssh -o ProxyCommand=…`)."""
    with reported_errors():
        logs.configure(log_level)
        trio.run(serve_stdio, _access_target(hostname, edge, ca_file))


@access_app.command("socks", epilog=examples(
    "burrow access socks --listen 127.0.0.1:1080",
    "curl --socks5-hostname 127.0.0.1:1080 http://198.18.5.10/",
    "burrow access socks --edge edge.example.com:443 --service-token \"$CLIENT_ID:$CLIENT_SECRET\"",
))
def access_socks(
    listen: str = typer.Option("127.0.0.1:1080", "--listen", help="Local HOST:PORT of the SOCKS5 proxy."),
    edge: str = typer.Option(None, "--edge", help="Edge HOST:PORT (default: the edge of `tunnel login`)."),
    ca_file: Path = typer.Option(None, "--ca-file", help="Extra CA (PEM) to trust for the edge."),
    token_file: Path = typer.Option(None, "--token-file", help="File holding the account's login token (default: the credential of `tunnel login`)."),
    service_token: str = typer.Option(None, "--service-token", envvar="BURROW_SERVICE_TOKEN", help="CLIENT_ID:CLIENT_SECRET of a service token allowed by `access policy set-network`."),
    log_level: str = typer.Option("info", "--loglevel", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run a SOCKS5 proxy (CONNECT, UDP ASSOCIATE) into this account's private networks (`tunnel route ip`)."""
    with reported_errors():
        logs.configure(log_level)
        listen_host, listen_port = parse_hostport(listen)
        proxy = SocksProxy(_socks_edge(edge, ca_file, token_file, service_token))
        trio.run(partial(proxy.serve, listen_host, listen_port))


def _socks_edge(edge: str | None, ca_file: Path | None, token_file: Path | None, service_token: str | None) -> SocksEdge:
    """Where flows go and the credential they carry: a service token, a token file, or `tunnel login`'s credential."""
    if token_file is not None and service_token is not None:
        raise ConfigError("give --token-file or --service-token, not both")
    cert_path = burrow_home() / "cert.pem"
    needs_cert = edge is None or (token_file is None and service_token is None)
    cert = load_account_cert(cert_path) if needs_cert or cert_path.exists() else None
    if service_token is not None:
        client_id, sep, secret = service_token.partition(":")
        if not sep or not client_id or not secret:
            raise ConfigError("--service-token must be CLIENT_ID:CLIENT_SECRET")
        headers = (("burrow-access-client-id", client_id.encode()), ("burrow-access-client-secret", secret.encode()))
    elif token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {token_file}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"--token-file {token_file} is empty")
        headers = (("authorization", f"Bearer {token}".encode()),)
    else:
        headers = (("authorization", b"Bearer " + cert.api_token.value),)
    if edge is not None:
        edge_host, edge_port = parse_hostport(edge, 443)
    else:
        url = urlsplit(cert.edge_url)
        edge_host, edge_port = url.hostname, url.port or 443
    ca_pem = cert.edge_ca if cert is not None else None
    target = Target(edge_host, edge_host, edge_port, str(ca_file) if ca_file else None, ca_pem)
    return SocksEdge(target, headers)
