"""A real PostgreSQL server for the tests: Debian's binaries, `initdb`/`pg_ctl` in a temporary
directory as an unprivileged user (the tests run as root, which PostgreSQL refuses), listening on
a unix socket in that directory and on an ephemeral 127.0.0.1 port; stopped and removed afterwards.

One server per test session (`pg_server`), a fresh database per test (`pg_url`), made with
CREATE DATABASE from an empty template: a few tens of milliseconds.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

PG_BIN = Path(os.environ.get("BURROW_PG_BIN", "/usr/lib/postgresql/15/bin"))
RUN_AS = "nobody"
SUPERUSER = "burrow"
START_TIMEOUT_S = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    """One PostgreSQL cluster in `root`, owned by an unprivileged user."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self._names = itertools.count(1)

    def _run(self, *args: str) -> None:
        command = [str(a) for a in args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL is not installed in {PG_BIN} (make test installs Debian's postgresql)")
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=300"
        )
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-o", options, "-w", "-t", START_TIMEOUT_S, "start")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", *, tcp: bool = False) -> str:
        """A passwordless URL: over the unix socket, or over TCP to 127.0.0.1."""
        if tcp:
            return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
        return f"postgresql://{SUPERUSER}@/{database}?host={self.root}&port={self.port}"

    def create_database(self) -> str:
        """A new empty database's name."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY FILE_COPY")
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def dump(self, database: str) -> str:
        """Every row of `database` as `pg_dump` writes it."""
        result = subprocess.run(
            [PG_BIN / "pg_dump", "--data-only", "-h", str(self.root), "-p", str(self.port), "-U", SUPERUSER, database],
            capture_output=True, text=True, check=True, timeout=START_TIMEOUT_S,
        )
        return result.stdout


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for the whole session (one per xdist worker)."""
    server = PgServer(Path(tempfile.mkdtemp(prefix="burrow-pg-")))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(pg_server: PgServer):
    """The name of a fresh, empty database, dropped after the test."""
    name = pg_server.create_database()
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def pg_url(pg_server: PgServer, pg_database: str) -> str:
    """A passwordless unix-socket URL of a fresh, empty database."""
    return pg_server.url(pg_database)
