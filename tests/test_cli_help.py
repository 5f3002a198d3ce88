"""Issue 8 CLI polish: every command of both CLIs has --help with an example; colours only
on a terminal; --version; shell completion answers."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from connector.cli import app as connector_app
from edge.cli import app as edge_app

BIN = Path(sys.executable).parent
APPS = {"burrow": connector_app, "burrow-edge": edge_app}


def walk(command, path: tuple[str, ...]):
    """(path, click command) for a command and everything under it, hidden ones included."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


COMMANDS = [
    (program, path, command)
    for program, app in APPS.items()
    for path, command in walk(typer.main.get_command(app), ())
]


def test_the_walk_finds_the_commands_scripts_rely_on():
    paths = {" ".join((program, *path)) for program, path, _ in COMMANDS}
    assert {"burrow tunnel run", "burrow tunnel route dns", "burrow service install", "burrow-edge serve",
            "burrow-edge account create"} <= paths


@pytest.mark.parametrize(
    "program, path, command", COMMANDS, ids=[" ".join((p, *path)) for p, path, _ in COMMANDS]
)
def test_help_exits_0_and_shows_an_example_of_the_command(program, path, command):
    result = CliRunner().invoke(APPS[program], [*path, "--help"], prog_name=program)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "\x1b[" not in result.output  # not a terminal: no colours
    if not getattr(command, "commands", None):  # a leaf command: an example that runs it
        assert "Examples:" in result.output
        assert " ".join((program, *path)) in result.output.partition("Examples:")[2]


def run_in_terminal(args: list[str]) -> bytes:
    """Output of a command run with a pseudo-terminal as stdout/stderr."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    with subprocess.Popen(args, stdout=secondary, stderr=secondary, stdin=subprocess.DEVNULL, env=env) as proc:
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=30)
    os.close(primary)
    return b"".join(chunks)


@pytest.mark.parametrize("program", APPS)
def test_colours_on_a_terminal(program):
    assert b"\x1b[" in run_in_terminal([str(BIN / program), "--help"])


@pytest.mark.parametrize("program", APPS)
def test_version_and_shell_completion(program):
    runner, app = CliRunner(), APPS[program]
    version = runner.invoke(app, ["--version"], prog_name=program)
    assert version.exit_code == 0 and version.output.startswith(f"{program} version ")
    variable = f"_{program.replace('-', '_').upper()}_COMPLETE"
    # What `--show-completion bash` prints; asked for by name, since `--show-completion` itself
    # guesses the shell from the process tree (shellingham), which differs between runs.
    script = runner.invoke(app, [], prog_name=program, env={variable: "source_bash"})
    assert script.exit_code == 0 and f"_{program.replace('-', '_')}_completion()" in script.output
    env = {variable: "complete_bash", "COMP_WORDS": f"{program} --vers", "COMP_CWORD": "1"}
    words = runner.invoke(app, [], prog_name=program, env=env)
    assert words.output.split() == ["--version"]
