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


class BuildNative(build_ext):
    """Compiles with mypyc when the extensions are built (not when pip only asks for
    metadata), then records the digests of the sources compiled."""

    def finalize_options(self) -> None:
        self.distribution.ext_modules = _mypycify()
        super().finalize_options()

    def run(self) -> None:
        super().run()
        outputs = [Path(self.get_ext_fullpath(ext.name)) for ext in self.extensions]
        if outputs and all(path.exists() for path in outputs):
            digests = {module: NATIVE["digest"](NATIVE["source_path"](module, ROOT)) for module in NATIVE["MODULES"]}
            manifest = Path(self.get_ext_fullpath(RUNTIME)).parent / NATIVE["MANIFEST"]
            manifest.write_text(json.dumps(digests, indent=1) + "\n")
        else:
            print("note: Burrow's sans-IO cores were not compiled (no C compiler?): they run as pure Python", file=sys.stderr)


def _mypycify() -> list[Extension]:
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("note: mypyc is not installed: Burrow's sans-IO cores run as pure Python", file=sys.stderr)
        return []
    sources = [str(NATIVE["source_path"](module, ROOT).relative_to(ROOT)) for module in NATIVE["MODULES"]]
    extensions = mypycify(sources, group_name=NATIVE["GROUP"], opt_level="3")
    for extension in extensions:
        extension.optional = True  # a compiler error leaves the pure-Python modules, not a failed install
    return extensions


# A placeholder, replaced in BuildNative: it makes the wheel platform-specific and runs build_ext.
setup(ext_modules=[Extension(RUNTIME, sources=[])], cmdclass={"build_ext": BuildNative})
