"""What both CLIs do with errors: one line on stderr and the error's exit code."""

from __future__ import annotations

import contextlib
import importlib.metadata
import sys
from collections.abc import Iterator

from shared.aio import single_errors
from shared.errors import BurrowError


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn a BurrowError (alone or in a group) into `error: …` and its exit code."""
    try:
        with single_errors():
            yield
    except BurrowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


DISTRIBUTION = "burrow"


def package_version() -> str:
    """The installed package's version (from its metadata), or "unknown" when run from a bare checkout."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def examples(*commands: str) -> str:
    """A command's help epilog: `Examples:` then each command line, shown as written."""
    return "Examples:\n\n" + "\n\n".join(f"  $ {command}" for command in commands)
