"""`burrow service install|uninstall`: run tunnels as the systemd template unit `burrow-tunnel@.service`.

Layout (one instance per tunnel name, `systemctl enable --now burrow-tunnel@NAME`):

    /etc/systemd/system/burrow-tunnel@.service   the template unit (0644)
    /etc/burrow/NAME.yml                         the tunnel's config.yml (0640 root:burrow)
    /etc/burrow/NAME.json                        its credentials.json (0600 burrow:burrow)
    /var/lib/burrow                              the service's home (StateDirectory=burrow)

Everything is written under `root` (default `/`; tests pass a temporary
directory). systemctl runs only when root is `/` and systemd is running;
otherwise the commands to run are returned for the caller to print.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import BurrowError, ConfigError
from shared.files import write_private

log = logging.getLogger(__name__)

UNIT_NAME = "burrow-tunnel@.service"
UNIT_DIR = Path("etc/systemd/system")
CONFIG_DIR = Path("etc/burrow")
SERVICE_USER = "burrow"
STATE_DIR = "/var/lib/burrow"
DEFAULT_BINARY = "/usr/local/bin/burrow"
SYSTEMD_RUNNING_MARK = Path("run/systemd/system")  # what sd_booted() checks
CONFIG_MODE = 0o640
CREDENTIALS_MODE = 0o600
UNIT_MODE = 0o644
CONFIG_DIR_MODE = 0o755  # the files inside carry their own, tighter modes
STOP_TIMEOUT = "40s"  # `tunnel run`'s 30 s grace period, plus a margin
INSTANCE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

UNIT_TEMPLATE = """\
# Burrow tunnel connector, one instance per tunnel: systemctl enable --now burrow-tunnel@NAME
# Reads /etc/burrow/NAME.yml (config.yml) and /etc/burrow/NAME.json (credentials.json).
# Written by `burrow service install`; see docs/operations.md.
[Unit]
Description=Burrow tunnel %i
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
Group={user}
Environment=BURROW_HOME={state_dir}
WorkingDirectory={state_dir}
ExecStart={binary} tunnel run --config /etc/burrow/%i.yml --credentials-file /etc/burrow/%i.json %i
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
# 2: configuration error, 3: credentials rejected. Restarting cannot fix either.
RestartPreventExitStatus=2 3
TimeoutStopSec={stop_timeout}
StateDirectory=burrow
StateDirectoryMode=0700
ConfigurationDirectory=burrow
ConfigurationDirectoryMode=0755
UMask=0077

# Hardening: an unprivileged user with no capabilities and a read-only system.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""


class NeedsRoot(BurrowError):
    """Installing a system service needs root."""


def render_unit(binary: str = DEFAULT_BINARY) -> str:
    """The template unit, running `binary` (an absolute path)."""
    if not os.path.isabs(binary) or any(ch.isspace() for ch in binary):
        raise ConfigError(f"the burrow executable must be an absolute path without spaces, not {binary!r}")
    return UNIT_TEMPLATE.format(user=SERVICE_USER, state_dir=STATE_DIR, binary=binary, stop_timeout=STOP_TIMEOUT)


def instance_name(name: str) -> str:
    """`name` if it can be a unit instance name as it is (no systemd escaping needed)."""
    if not INSTANCE_NAME.fullmatch(name or ""):
        raise ConfigError(f"tunnel name {name!r} cannot name a service: use letters, digits, '-', '_' and '.'")
    return name


@dataclass(frozen=True)
class Layout:
    """Where the service's files go, under `root`."""

    root: Path = Path("/")

    @property
    def unit(self) -> Path:
        return self.root / UNIT_DIR / UNIT_NAME

    @property
    def config_dir(self) -> Path:
        return self.root / CONFIG_DIR

    def config(self, name: str) -> Path:
        return self.config_dir / f"{name}.yml"

    def credentials(self, name: str) -> Path:
        return self.config_dir / f"{name}.json"

    def installed(self) -> list[str]:
        """The tunnel names with a config installed."""
        if not self.config_dir.is_dir():
            return []
        return sorted(path.stem for path in self.config_dir.glob("*.yml") if INSTANCE_NAME.fullmatch(path.stem))

    @property
    def is_live_system(self) -> bool:
        return self.root.resolve() == Path("/")

    def systemd_running(self) -> bool:
        return self.is_live_system and (self.root / SYSTEMD_RUNNING_MARK).is_dir()


@dataclass
class Outcome:
    """What install/uninstall did, and what is left for the user to run."""

    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    ran: list[list[str]] = field(default_factory=list)
    to_run: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


Runner = Callable[[list[str]], None]


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise BurrowError(f"{command[0]} not found") from None
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise BurrowError(f"`{' '.join(command)}` failed: {detail[-1] if detail else f'exit {exc.returncode}'}") from None


def check_privileges(layout: Layout) -> None:
    """Refuse, in one line, to touch the live system without root."""
    if layout.is_live_system and os.geteuid() != 0:
        raise NeedsRoot(
            "installing a system service needs root (it writes /etc/systemd/system and /etc/burrow "
            "and creates the user 'burrow'); run it again with sudo"
        )


def default_binary() -> str:
    """The `burrow` next to the running interpreter (a venv or /usr/local), else on PATH."""
    beside = Path(os.path.dirname(os.path.abspath(sys.executable))) / "burrow"
    if beside.is_file():
        return str(beside)
    return shutil.which("burrow") or DEFAULT_BINARY


def install(
    layout: Layout, name: str, config: Path, credentials: Path, binary: str, run: Runner = _run
) -> Outcome:
    """Write the unit, copy the config and credentials, and start `burrow-tunnel@NAME` (see module doc)."""
    name = instance_name(name)
    outcome = Outcome()
    unit_text = render_unit(binary)
    owner = _service_user(layout, run, outcome)

    _write(layout.unit, unit_text.encode(), UNIT_MODE, None)
    layout.config_dir.mkdir(parents=True, exist_ok=True)
    layout.config_dir.chmod(CONFIG_DIR_MODE)
    _write(layout.config(name), _read(config), CONFIG_MODE, (0, owner[1]) if owner else None)
    _write(layout.credentials(name), _read(credentials), CREDENTIALS_MODE, owner)
    outcome.written += [layout.unit, layout.config(name), layout.credentials(name)]
    if binary.startswith(("/home/", "/root/")):
        outcome.notes.append(f"{binary} is under a home directory, which ProtectHome=yes hides from the service: "
                             "install burrow system-wide (pip install into /usr/local or /opt)")

    commands = [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", f"burrow-tunnel@{name}"]]
    _apply(layout, commands, run, outcome)
    return outcome


def uninstall(layout: Layout, name: str | None = None, run: Runner = _run) -> Outcome:
    """Stop and disable `burrow-tunnel@NAME` (every installed tunnel without a name) and remove its
    files; the template unit goes with the last tunnel. The user `burrow` and /var/lib/burrow stay."""
    outcome = Outcome()
    names = [instance_name(name)] if name else layout.installed()
    commands = [["systemctl", "disable", "--now", f"burrow-tunnel@{each}"] for each in names]
    if layout.systemd_running():  # stop first, then take the files away
        _apply(layout, commands, run, outcome)
        commands = []
    for each in names:
        for path in (layout.config(each), layout.credentials(each)):
            if path.exists():
                path.unlink()
                outcome.removed.append(path)
    if not layout.installed() and layout.unit.exists():
        layout.unit.unlink()
        outcome.removed.append(layout.unit)
    _apply(layout, [*commands, ["systemctl", "daemon-reload"]], run, outcome)
    if not outcome.removed and not names:
        outcome.notes.append("no Burrow tunnel service is installed")
    return outcome


def _apply(layout: Layout, commands: list[list[str]], run: Runner, outcome: Outcome) -> None:
    if layout.systemd_running():
        for command in commands:
            run(command)
            outcome.ran.append(command)
    else:
        outcome.to_run += commands


def _service_user(layout: Layout, run: Runner, outcome: Outcome) -> tuple[int, int] | None:
    """(uid, gid) of the service user on the live system, created if missing; None elsewhere."""
    if not layout.is_live_system:
        outcome.notes.append(f"not the live system: files keep their owner; chown them to '{SERVICE_USER}' as documented")
        return None
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        command = ["useradd", "--system", "--user-group", "--home-dir", STATE_DIR, "--no-create-home",
                   "--shell", "/usr/sbin/nologin", "--comment", "Burrow tunnel connector", SERVICE_USER]
        if shutil.which("useradd") is None:
            outcome.notes.append(f"create the service user first: {' '.join(command)}")
            return None
        run(command)
        outcome.ran.append(command)
        entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid


def _read(path: Path) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _write(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    """Atomically, never wider than `mode` on the way; chown when `owner` is given."""
    try:
        write_private(path, data)  # 0600 from the first byte
        if owner is not None:
            os.chown(path, *owner)
        path.chmod(mode)
    except OSError as exc:
        raise BurrowError(f"cannot write {path}: {exc.strerror}") from None
