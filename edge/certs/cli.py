"""`burrow-edge cert add|list|remove|status`: the certificate store from the command line.

A running edge notices the change within `CERT_REFRESH_INTERVAL` seconds (see
`edge.server`); connections already open keep the certificate they started with.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import typer

from edge.certs.acme_state import load_state
from edge.certs.files import check_pair
from edge.certs.store import MAX_CERT_FILE_SIZE, CertStore, remove_pair, scan, stem_for, write_pair
from shared.commands import examples, reported_errors
from shared.edge_config import load_edge_config, validate_acme_directory, validate_email
from shared.errors import ConfigError
from shared.values import parse_hostport

cert_app = typer.Typer(help="Manage the edge's TLS certificates.", no_args_is_help=True)

HomeOption = typer.Option(
    Path("/var/lib/burrow-edge"), "--home", envvar="BURROW_EDGE_HOME", help="The edge's state directory."
)


def _read(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_CERT_FILE_SIZE:
            raise ConfigError(f"{path}: larger than {MAX_CERT_FILE_SIZE} bytes; not a {what} file")
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _when(moment: datetime.datetime) -> str:
    days = (moment - datetime.datetime.now(datetime.timezone.utc)).total_seconds() / 86400
    return f"{moment:%Y-%m-%d %H:%M} UTC ({days:.1f} days)" if days >= 0 else f"{moment:%Y-%m-%d %H:%M} UTC (expired)"


@cert_app.command("add", epilog=examples("burrow-edge cert add --home /var/lib/burrow-edge fullchain.pem privkey.pem"))
def cert_add(
    cert: Path = typer.Argument(..., help="PEM file: the certificate, then its intermediates in order."),
    key: Path = typer.Argument(..., help="PEM file: the certificate's private key (unencrypted)."),
    home: Path = HomeOption,
) -> None:
    """Check a certificate and its key, then store them; the edge serves them by SNI."""
    with reported_errors():
        cfg = load_edge_config(home)
        chain_pem, key_pem = _read(cert, "certificate"), _read(key, "key")
        checked = check_pair(chain_pem, key_pem, str(cert), str(key))
        stem = stem_for(checked.names[0]) if checked.names else "ip"
        if (cfg.certs_dir / f"{stem}.pem").exists():
            raise ConfigError(f"a certificate named {stem} is stored already; `burrow-edge cert remove {stem}` first")
        write_pair(cfg.certs_dir, stem, chain_pem, key_pem, "file")
        for warning in checked.warnings:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(f"Added {stem}: {', '.join(checked.names)}; expires {_when(checked.leaf.not_valid_after_utc)}")


@cert_app.command("list", epilog=examples("burrow-edge cert list --home /var/lib/burrow-edge"))
def cert_list(home: Path = HomeOption) -> None:
    """List stored certificates: name, source, expiry, covered names."""
    with reported_errors():
        cfg = load_edge_config(home)
        infos, problems = scan(cfg.certs_dir)
        for info in infos:
            typer.echo(f"{info.stem}  {info.source}  expires {_when(info.not_after)}  {' '.join(info.names)}")
        for problem in problems.values():
            typer.echo(f"unusable: {problem}")
        if not infos and not problems:
            typer.echo(f"No certificates in {cfg.certs_dir}")


@cert_app.command("remove", epilog=examples("burrow-edge cert remove --home /var/lib/burrow-edge app.example.com"))
def cert_remove(name: str = typer.Argument(..., help="A certificate's name as `cert list` shows it."), home: Path = HomeOption) -> None:
    """Remove a certificate; a running edge stops serving it within seconds."""
    with reported_errors():
        cfg = load_edge_config(home)
        stem = name if (cfg.certs_dir / f"{name}.pem").exists() else stem_for(name)
        if not (cfg.certs_dir / f"{stem}.pem").exists():
            raise ConfigError(f"no certificate named {name}; `burrow-edge cert list` shows the names")
        remove_pair(cfg.certs_dir, stem)
        typer.echo(f"Removed {stem}")
        if stem in load_state(cfg.home):
            typer.echo("ACME manages this certificate: the running edge will obtain it again")


@cert_app.command("status", epilog=examples("burrow-edge cert status --home /var/lib/burrow-edge"))
def cert_status(home: Path = HomeOption) -> None:
    """Each certificate: source, expiry, next renewal and the last failure (ACME)."""
    with reported_errors():
        cfg = load_edge_config(home)
        store = CertStore(cfg.certs_dir)
        problems = store.refresh()
        state = load_state(cfg.home)
        for info in store.infos:
            typer.echo(f"{info.stem}  source={info.source}  names={','.join(info.names)}")
            typer.echo(f"  expires: {_when(info.not_after)}")
            _print_acme(state.pop(info.stem, None), manual=info.source != "acme")
        for stem, entry in state.items():
            typer.echo(f"{stem}  source=acme  names={','.join(entry.names)}  (not issued yet)")
            _print_acme(entry, manual=False)
        for problem in problems:
            typer.echo(f"unusable: {problem}")
        if not store.infos and not state and not problems:
            typer.echo(f"No certificates in {cfg.certs_dir}")


def _print_acme(entry, *, manual: bool) -> None:
    if entry is None:
        typer.echo("  renewal: manual (replace it with `cert remove` + `cert add`)" if manual else "  renewal: not scheduled yet")
        return
    typer.echo(f"  challenge: {entry.challenge}")
    if entry.next_attempt is not None:
        typer.echo(f"  next renewal: {entry.next_attempt:%Y-%m-%d %H:%M:%S} UTC")
    if entry.last_failure is not None:
        typer.echo(f"  last failure: {entry.last_failure_at:%Y-%m-%d %H:%M:%S} UTC: {entry.last_failure} (failures in a row: {entry.failures})")
    else:
        typer.echo("  last failure: none")


def acme_settings(http_listen: str | None, directory: str | None, email: str | None, ca_file: Path | None, dev_ca: bool) -> dict:
    """The ACME and plain-HTTP fields of `burrow-edge init`, checked."""
    if directory is None and (email is not None or ca_file is not None):
        raise ConfigError("--acme-email and --acme-ca-file need --acme-directory")
    if directory is not None and email is None:
        raise ConfigError("--acme-directory needs --acme-email (the CA's contact for expiry and policy notices)")
    if directory is not None and dev_ca:
        raise ConfigError("choose --dev-ca or --acme-directory, not both")
    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(f"--acme-ca-file {ca_file}: no such file")
    return {
        "http_listen": parse_hostport(http_listen) if http_listen else None,
        "acme_directory": validate_acme_directory(directory) if directory else None,
        "acme_email": validate_email(email) if email else None,
        "acme_ca_file": ca_file.resolve() if ca_file else None,
    }
