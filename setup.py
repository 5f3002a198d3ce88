"""Compiles the sans-IO cores that shared/native.py lists with mypyc, beside their sources.

Everything else about the package is in pyproject.toml. Without mypyc or a C compiler
the install still succeeds, without extensions, and Burrow runs as pure Python.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
NATIVE = runpy.run_path(str(ROOT / "shared" / "native.py"))
RUNTIME = NATIVE["GROUP"] + "__mypyc"  # the library mypyc builds for the group


MYPY_OPTIONS = [
    "--ignore-missing-imports",  # trio, httptools… are not in the isolated build environment: typed Any
    "--follow-imports=silent",  # the modules they import are read for types, not checked
]


class BuildNative(build_ext):
    """Compiles with mypyc when the extensions are built, not each time setup.py runs (pip
    also runs it for metadata), then records the digests of the sources compiled."""

    def run(self) -> None:
        compiled = _mypycify()
        if compiled is None:
            return
        _fill(self.extensions, compiled)
        super().run()
        if all(Path(self.get_ext_fullpath(ext.name)).exists() for ext in self.extensions):
            digests = {module: NATIVE["digest"](NATIVE["source_path"](module, ROOT)) for module in NATIVE["MODULES"]}
            manifest = Path(self.get_ext_fullpath(RUNTIME)).parent / NATIVE["MANIFEST"]
            manifest.write_text(json.dumps(digests, indent=1) + "\n")
        else:
            print("note: Burrow's sans-IO cores were not compiled (no C compiler?): they run as pure Python", file=sys.stderr)


def _mypycify() -> list[Extension] | None:
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("note: mypyc is not installed: Burrow's sans-IO cores run as pure Python", file=sys.stderr)
        return None
    sources = [str(NATIVE["source_path"](module, ROOT).relative_to(ROOT)) for module in NATIVE["MODULES"]]
    return mypycify([*MYPY_OPTIONS, *sources], group_name=NATIVE["GROUP"], opt_level="3")


def _fill(placeholders: list[Extension], compiled: list[Extension]) -> None:
    """Give the placeholders (which setuptools has prepared) what mypyc generated for them."""
    by_name = {extension.name: extension for extension in compiled}
    if set(by_name) != {extension.name for extension in placeholders}:
        raise SystemExit(f"mypyc built {sorted(by_name)}, setup.py expected {sorted(e.name for e in placeholders)}")
    for placeholder in placeholders:
        for key, value in vars(by_name[placeholder.name]).items():
            if not key.startswith("_"):
                setattr(placeholder, key, value)
        placeholder.optional = True  # a compiler error leaves the pure-Python modules, not a failed install


# Placeholders for what mypyc builds (its runtime library, then one small extension per module),
# filled in by BuildNative: they make the wheel platform-specific and name its extensions.
setup(
    ext_modules=[Extension(name, sources=[]) for name in (RUNTIME, *NATIVE["MODULES"])],
    cmdclass={"build_ext": BuildNative},
)
