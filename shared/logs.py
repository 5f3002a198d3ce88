"""Log helpers shared by both CLIs: one format, secrets never printed."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure(level: str = "info") -> None:
    """Send log records to stderr in the `event key=value` format."""
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format=LOG_FORMAT,
        force=True,
    )
