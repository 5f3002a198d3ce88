"""Local tunnel credentials under the Burrow home: finding a tunnel's `credentials.json` by
name or UUID, and removing it when the tunnel is deleted."""

from __future__ import annotations

import uuid
from pathlib import Path

from shared.credentials import load_credentials
from shared.errors import ConfigError
from shared.values import burrow_home


def credentials_path(tunnel: str | None, explicit: Path | None) -> Path:
    """The credentials file: explicit, else NAME/credentials.json, else the one whose TunnelID is UUID."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if not tunnel:
        raise ConfigError("which tunnel? give NAME, or `tunnel:` / `credentials-file:` in config.yml")
    home = burrow_home()
    by_name = home / tunnel / "credentials.json"
    if by_name.exists():
        return by_name
    try:
        wanted = str(uuid.UUID(tunnel))
    except ValueError:
        raise ConfigError(f"no credentials for tunnel '{tunnel}': {by_name} is missing") from None
    for path in home.glob("*/credentials.json"):
        if tunnel_id_of(path) == wanted:
            return path
    raise ConfigError(f"no credentials for tunnel {tunnel} under {home}")


def remove_local_credentials(name: str, tunnel_id: str) -> Path | None:
    """Remove the deleted tunnel's credentials.json (and its directory if now empty), if it is that tunnel's."""
    home = burrow_home()
    candidates = [home / name / "credentials.json", *home.glob("*/credentials.json")]
    path = next((p for p in candidates if p.exists() and tunnel_id_of(p) == tunnel_id), None)
    if path is None:
        return None
    path.unlink()
    try:
        path.parent.rmdir()
    except OSError:  # other files live there (config.yml…): keep them
        pass
    return path


def tunnel_id_of(path: Path) -> str | None:
    try:
        return load_credentials(path).tunnel_id
    except ConfigError:
        return None
