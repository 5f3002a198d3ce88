"""Which modules run compiled, and the switch back to their pure-Python sources.

`pip install` compiles MODULES with mypyc when it can (setup.py): each one's extension
sits beside its `.py`, sharing one runtime library (GROUP), and Python loads the
extension first. `install()`, run by `shared/__init__.py` before any of them is
imported, puts the sources first instead, for all of them at once, when

* `BURROW_PURE_PYTHON=1` is set, or
* a source differs from the one compiled (the digests the build wrote to MANIFEST):
  the extensions would run stale code, so the sources run until the next install.

`status()` says which ones run. This module imports only the standard library: setup.py
reads MODULES from it before anything is installed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

MODULES = (
    "shared.events", "shared.session_events", "shared.framing", "shared.protocol",  # the tunnel session
    "shared.http1_wire", "edge.visitors.http1_guard", "edge.visitors.http1_chunks", "edge.visitors.http1_parser",
    "connector.origins.http1_codec",  # HTTP/1.1 around llhttp: the visitor side and the origin side
    "shared.aio", "shared.tunnel_stream", "shared.transport",  # the tunnel session's trio shell
    "edge.visitors.http1_response", "edge.visitors.http1", "edge.routing.forwarded_headers", "edge.routing.proxy",
    "connector.origins.http1", "connector.tunnel.streams",  # the request path around them, both sides
)
GROUP = "shared.cores"  # mypyc's runtime library of the group: shared/cores__mypyc.<abi>.so
MANIFEST = "native_build.json"  # beside GROUP's library: {module: sha256 of the source compiled}
SWITCH = "BURROW_PURE_PYTHON"

ROOT = Path(__file__).resolve().parent.parent  # holds shared/, edge/, connector/

_reason = ""  # why the sources run ("" while the extensions may load)


def source_path(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _built_digests() -> dict[str, str]:
    try:
        return json.loads((ROOT / "shared" / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds MODULES as their `.py` files, ahead of the extensions beside them."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None):
        if fullname not in MODULES or not path:
            return None
        for entry in path:
            source = Path(entry) / (fullname.rpartition(".")[2] + ".py")
            if source.is_file():
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def install() -> None:
    """Put the sources first when switched to pure Python or when the build is stale."""
    global _reason
    if any(isinstance(finder, _SourcesFirst) for finder in sys.meta_path):
        return
    if os.environ.get(SWITCH) == "1":
        _reason = f"{SWITCH}=1"
    else:
        built = _built_digests()
        if built and any(built.get(module) != digest(source_path(module)) for module in MODULES):
            _reason = "the sources changed since the build: reinstall to compile them"
    if _reason:
        sys.meta_path.insert(0, _SourcesFirst())


def compiled() -> bool:
    """True when every module of MODULES runs compiled (imports them)."""
    return all(_is_extension(importlib.import_module(module)) for module in MODULES)


def _is_extension(module: ModuleType) -> bool:
    return isinstance(getattr(module.__spec__, "loader", None), importlib.machinery.ExtensionFileLoader)


def pure_reason() -> str:
    """Why MODULES run as pure Python; "" when they run compiled."""
    if compiled():
        return ""
    return _reason or "not compiled at install (no mypyc or no C compiler)"


def status() -> str:
    """'compiled (mypyc)' or 'pure Python: <why>', for logs and tests."""
    why = pure_reason()
    return f"pure Python: {why}" if why else "compiled (mypyc)"
