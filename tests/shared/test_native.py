"""shared/native.py: the install compiles the sans-IO cores; BURROW_PURE_PYTHON=1 and a stale
build run their pure-Python sources instead. Each case runs in a fresh interpreter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from shared import native

REPO = Path(__file__).resolve().parents[2]
REPORT = (
    "import importlib, sys; from shared import native; "
    "print(native.status()); print(*(importlib.import_module(m).__file__ for m in native.MODULES), sep='\\n')"
)


def loaded(env_update: dict[str, str], pythonpath: Path | None = None) -> tuple[str, list[str]]:
    """(status, the files MODULES loaded from) in a new interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in (native.SWITCH, "PYTHONPATH")} | env_update
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run([sys.executable, "-c", REPORT], env=env, cwd="/", capture_output=True, text=True, check=True)
    status, *files = result.stdout.splitlines()
    return status, files


def require_compiler() -> None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if native.compiled():
        return
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) on this machine: the install could not compile the cores")
    if not (Path(sysconfig.get_path("include")) / "Python.h").exists():
        pytest.skip("no Python headers (Python.h) on this machine: the install could not compile the cores")


def test_the_install_compiled_the_cores():
    require_compiler()
    status, files = loaded({})
    assert status == "compiled (mypyc)", f"{status} (make test installs with mypy and gcc)"
    assert all(Path(f).suffix == ".so" and Path(f).parent == native.source_path(m).parent for f, m in zip(files, native.MODULES))


def test_burrow_pure_python_runs_the_sources():
    status, files = loaded({native.SWITCH: "1"})
    assert status == f"pure Python: {native.SWITCH}=1"
    assert files == [str(native.source_path(module)) for module in native.MODULES]


def test_this_run_loads_what_the_switch_says():
    """The suite's own process: `BURROW_PURE_PYTHON=1 pytest` (the Makefile's second run) is pure."""
    if os.environ.get(native.SWITCH) == "1":
        assert not native.compiled() and native.pure_reason() == f"{native.SWITCH}=1"
    else:
        require_compiler()
        assert native.compiled(), native.status()


def test_a_source_changed_after_the_build_runs_as_source(tmp_path):
    require_compiler()
    for package in ("shared", "edge", "connector"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    changed = native.source_path(native.MODULES[-1], tmp_path)
    changed.write_text(changed.read_text() + "\nCHANGED = True\n")
    status, files = loaded({}, pythonpath=tmp_path)
    assert status == "pure Python: the sources changed since the build: reinstall to compile them"
    assert files == [str(native.source_path(module, tmp_path)) for module in native.MODULES]
    changed.write_text(changed.read_text().removesuffix("\nCHANGED = True\n"))
    assert loaded({}, pythonpath=tmp_path)[0] == "compiled (mypyc)"


def test_the_debug_log_says_which_cores_run():
    status, _ = loaded({})
    code = "import logging; from shared import logs; logs.configure('debug'); logs.log_native_cores(logging.getLogger('edge'))"
    env = {k: v for k, v in os.environ.items() if k != native.SWITCH}
    for extra, expected in (({}, "compiled=yes\n" if status.startswith("compiled") else "compiled=no reason="),
                            ({native.SWITCH: "1"}, f"compiled=no reason={native.SWITCH}=1\n")):
        result = subprocess.run([sys.executable, "-c", code], env=env | extra, capture_output=True, text=True, check=True)
        assert f" DEBUG edge native.cores {expected}" in result.stderr
