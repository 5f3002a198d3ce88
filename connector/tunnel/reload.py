"""Reload the ingress rules of a running connector: on SIGHUP, and when config.yml changes.

A new config is validated whole before it replaces the old one; an invalid one
is logged and the old rules stay. Only the ingress rules and `originRequest`
are reloaded: tunnel connections are not touched.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import trio

from connector.ingress.rules import Ingress
from connector.tunnel.streams import StreamServer
from shared.errors import ConfigError

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0  # seconds between checks of config.yml's mtime


class Reloader:
    """Swaps `server.ingress` for `build()` when asked to and it validates."""

    def __init__(self, path: Path | None, build: Callable[[], Ingress], server: StreamServer) -> None:
        self.path = path
        self.build = build
        self.server = server
        self._seen = self._stamp()

    def reload(self, why: str) -> bool:
        """Build and swap in the new rules; on a ConfigError log it and keep the old ones."""
        try:
            ingress = self.build()
        except ConfigError as exc:
            log.error("config.reload_rejected why=%s keeping=old error=%s", why, exc)
            return False
        for warning in ingress.warnings:
            log.warning("config.warning %s", warning)
        self.server.ingress = ingress
        log.info("config.reloaded why=%s rules=%d", why, len(ingress.rules))
        return True

    async def run(self) -> None:
        """Reload on SIGHUP, and when the file's mtime, size or inode changes (polled)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._on_signal)
            if self.path is not None:
                nursery.start_soon(self._poll)

    async def _on_signal(self) -> None:
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _ in signals:
                if self.path is None:
                    log.warning("config.reload_skipped reason=no config file")
                    continue
                self._seen = self._stamp()
                self.reload("SIGHUP")

    async def _poll(self) -> None:
        while True:
            await trio.sleep(POLL_INTERVAL)
            stamp = self._stamp()
            if stamp is not None and stamp != self._seen:
                self._seen = stamp
                self.reload("file changed")

    def _stamp(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino
