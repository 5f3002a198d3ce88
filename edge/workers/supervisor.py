"""The supervisor of `burrow-edge serve --workers N`.

It binds every listener once (HTTPS, tunnels and plain HTTP as N SO_REUSEPORT sockets, one
per worker, so the kernel spreads connections; DNS once, for worker 0; metrics for itself),
drops root, starts the workers (`python -m edge.workers.child`), restarts one that dies,
tells each which tunnels the others hold, merges their metrics into its `/metrics`, and on
SIGTERM/SIGINT drains them together: each stops accepting and finishes its visitors'
requests, and only when all have (or the grace period ran out) do they close their
tunnel sessions, so no worker loses a session another still forwards to.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from edge import privileges
from edge.dns.server import open_sockets
from edge.workers.control import ControlChannel
from edge.workers.metrics_merge import merge
from shared.aio import single_errors
from shared.edge_config import EdgeConfig
from shared.errors import ConfigError
from shared.files import write_private
from shared.metrics import MetricsServer
from shared.values import format_hostport

log = logging.getLogger(__name__)

LISTEN_FILE = "listen.json"  # as edge.server's: written here once every worker listens
RESTART_DELAY = 1.0  # before a worker that died is started again
SCRAPE_TIMEOUT = 5.0  # a worker's metrics
START_TIMEOUT = 60.0  # a worker's start-up, up to its `ready`
CLOSE_TIMEOUT = 10.0  # past the grace period, for a worker to close its sessions and exit


def bind_reuseport(purpose: str, address: tuple[str, int], count: int) -> list[list[socket.socket]]:
    """`count` groups of listening sockets on `address` (every address of the host for "",
    like trio.open_tcp_listeners), all with SO_REUSEPORT on one port (port 0: one chosen)."""
    host, port = address
    groups: list[list[socket.socket]] = [[] for _ in range(count)]
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, sockaddr in infos:
            for group in groups:
                sock = socket.socket(family, kind, proto)
                group.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((sockaddr[0], port, *sockaddr[2:]))
                port = sock.getsockname()[1]
                sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        for sock in (sock for group in groups for sock in group):
            sock.close()
        raise ConfigError(f"cannot listen for {purpose} on {format_hostport(address)}: {exc.strerror or exc}") from exc
    return groups


@dataclass
class Slot:
    """One worker: its process, control channel and what it last reported."""

    index: int
    process: trio.Process | None = None
    control: ControlChannel | None = None
    ready: trio.Event = field(default_factory=trio.Event)
    idle: bool = False
    addresses: dict = field(default_factory=dict)
    scrape_lock: trio.Lock = field(default_factory=trio.Lock)
    scraped: trio.Event | None = None
    metrics: str = ""


class MergedMetrics(Collector):
    """The workers' metrics as last scraped, merged."""

    def __init__(self) -> None:
        self.families: list = []

    def collect(self):
        return iter(self.families)


class Supervisor:
    def __init__(self, cfg: EdgeConfig, workers: int, start: dict, grace: float) -> None:
        self.cfg = cfg
        self.start = start  # the serve options and logging settings, passed on to every worker
        self.grace = grace
        self.slots = [Slot(index) for index in range(workers)]
        self.held: dict[int, list[str]] = {}
        self.draining = False
        self.closing = trio.Event()
        self.merged = MergedMetrics()
        self.sockets: dict[str, list[list[socket.socket]]] = {}
        self.dns: tuple[socket.socket, socket.socket] | None = None  # worker 0's UDP and TCP

    def bind(self) -> dict[str, tuple[str, int]]:
        """Every listener; returns the bound addresses of HTTPS, tunnels and HTTP."""
        cfg, count = self.cfg, len(self.slots)
        self.sockets["https"] = bind_reuseport("HTTPS", cfg.https_listen, count)
        self.sockets["tunnel"] = bind_reuseport("tunnels", cfg.tunnel_listen, count)
        if cfg.http_listen is not None:
            self.sockets["http"] = bind_reuseport("HTTP", cfg.http_listen, count)
        return {name: groups[0][0].getsockname()[:2] for name, groups in self.sockets.items()}

    async def bind_dns(self) -> None:
        if self.cfg.dns_listen is not None:
            try:
                self.dns = await open_sockets(*self.cfg.dns_listen)
            except OSError as exc:
                raise ConfigError(f"cannot listen for DNS on {format_hostport(self.cfg.dns_listen)}: {exc.strerror or exc}") from exc

    def _fds(self, index: int) -> tuple[dict[str, list[int]], list[int]]:
        fds = {name: [sock.fileno() for sock in groups[index]] for name, groups in self.sockets.items()}
        if index == 0 and self.dns is not None:
            fds["dns"] = [sock.fileno() for sock in self.dns]
        return fds, [fd for group in fds.values() for fd in group]

    async def run_slot(self, slot: Slot, directory: Path) -> None:
        """Keep worker `slot.index` running until the drain ends."""
        while not self.draining:  # (a worker that died is not started again during a drain)
            ours, theirs = socket.socketpair()
            fds, passed = self._fds(slot.index)
            command = [sys.executable, "-m", "edge.workers.child", str(theirs.fileno())]
            slot.process = await trio.lowlevel.open_process(command, pass_fds=[theirs.fileno(), *passed])
            theirs.close()
            slot.control = ControlChannel(ours)
            slot.idle = False
            await slot.control.send({
                "type": "start", "index": slot.index, "directory": str(directory), "sockets": fds, **self.start,
            })
            await self._broadcast_held()
            try:
                await self._listen(slot)
                code = await slot.process.wait()
            finally:
                if slot.process.returncode is None:  # cancelled: past the drain's time, or a failed start
                    slot.process.kill()
                await trio.aclose_forcefully(slot.control.stream)
            self.held.pop(slot.index, None)
            await self._broadcast_held()
            if not slot.ready.is_set():  # it never listened: its error (on the log) is the edge's
                raise ConfigError(f"worker {slot.index} exited with code {code} while starting; its error is logged above")
            if self.draining:
                log.info("edge.worker_exited worker=%d code=%d", slot.index, code)
                break
            log.error("edge.worker_died worker=%d code=%d restarting_in=%gs", slot.index, code, RESTART_DELAY)
            await trio.sleep(RESTART_DELAY)
        slot.idle = True
        self._check_idle()

    async def _listen(self, slot: Slot) -> None:
        while (message := await slot.control.receive()) is not None:
            kind = message.get("type")
            if kind == "ready":
                slot.addresses = message["addresses"]
                slot.ready.set()
            elif kind == "tunnels":
                self.held[slot.index] = message["ids"]
                await self._broadcast_held()
            elif kind == "refresh":  # a write through that worker's API: the others re-read the registry
                await self._send_all({"type": "refresh"}, but=slot)
            elif kind == "idle":
                slot.idle = True
                self._check_idle()
            elif kind == "metrics" and slot.scraped is not None:
                slot.metrics = message["text"]
                slot.scraped.set()

    def _check_idle(self) -> None:
        if self.draining and all(slot.idle for slot in self.slots):
            self.closing.set()

    async def _broadcast_held(self) -> None:
        await self._send_all({"type": "peers", "held": {str(index): ids for index, ids in self.held.items()}})

    async def _send_all(self, message: dict, but: Slot | None = None) -> None:
        for slot in self.slots:
            if slot.control is not None and slot is not but:
                try:
                    await slot.control.send(message)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # that worker is gone: its slot restarts it or has ended

    async def scrape(self) -> None:
        """Fetch every worker's metrics (in parallel) and merge them."""
        texts: dict[int, str] = {}

        async def one(slot: Slot) -> None:
            async with slot.scrape_lock:
                slot.scraped = trio.Event()
                try:
                    await slot.control.send({"type": "scrape"})
                except (trio.BrokenResourceError, trio.ClosedResourceError, AttributeError):
                    return
                with trio.move_on_after(SCRAPE_TIMEOUT):
                    await slot.scraped.wait()
                    texts[slot.index] = slot.metrics

        async with trio.open_nursery() as nursery:
            for slot in self.slots:
                nursery.start_soon(one, slot)
        self.merged.families = merge(texts)

    async def drain(self, cancel_scope: trio.CancelScope) -> None:
        """Every worker finishes its visitors' requests, then (all done, or the grace period
        over) closes its sessions and exits."""
        self.draining = True
        for groups in self.sockets.values():  # the workers' copies are then the last: closed, the port is free
            for sock in (sock for group in groups for sock in group):
                sock.close()
        await self._send_all({"type": "drain"})
        self._check_idle()
        with trio.move_on_after(self.grace):
            await self.closing.wait()
        await self._send_all({"type": "close"})
        cancel_scope.deadline = trio.current_time() + CLOSE_TIMEOUT  # the slots end as their workers exit

    async def stop(self) -> None:
        """A second signal: every worker stops at once."""
        await self._send_all({"type": "stop"})


async def supervise(
    cfg: EdgeConfig, workers: int, start: dict, grace: float, metrics_listen: tuple[str, int] | None,
    run_as: privileges.User | None,
) -> None:
    """Run `workers` workers until SIGINT/SIGTERM, then drain them (a second signal: stop at once)."""
    supervisor = Supervisor(cfg, workers, start, grace)
    addresses = supervisor.bind()
    await supervisor.bind_dns()
    registry = CollectorRegistry()
    registry.register(supervisor.merged)
    listening: dict = {}
    directory = Path(tempfile.mkdtemp(prefix="burrow-edge-"))  # 0700: the workers' forwarding sockets
    try:
        with single_errors():
            async with trio.open_nursery() as nursery:
                if metrics_listen is not None:
                    def ready() -> tuple[bool, dict]:
                        return bool(listening) and not supervisor.draining, {"listeners": listening, "workers": workers}

                    server = MetricsServer(registry, ready, refresh=supervisor.scrape)
                    await nursery.start(server.serve, metrics_listen)
                if run_as is not None:  # every listener is bound: the workers never hold root
                    os.chown(directory, run_as.uid, run_as.gid)
                    privileges.drop_to(run_as, cfg.home)
                slots = trio.CancelScope()

                async def run_slots() -> None:
                    with slots:
                        async with trio.open_nursery() as slot_nursery:
                            for slot in supervisor.slots:
                                slot_nursery.start_soon(supervisor.run_slot, slot, directory)
                    nursery.cancel_scope.cancel()  # every worker has exited

                nursery.start_soon(run_slots)
                with trio.move_on_after(START_TIMEOUT) as starting:
                    for slot in supervisor.slots:
                        await slot.ready.wait()
                if starting.cancelled_caught:
                    raise ConfigError(f"the workers did not all listen within {START_TIMEOUT:g}s")
                if "dns" in supervisor.slots[0].addresses:
                    addresses["dns"] = supervisor.slots[0].addresses["dns"]
                listening.update({name: format_hostport(tuple(address)) for name, address in addresses.items()})
                write_private(cfg.home / LISTEN_FILE, json.dumps(listening))
                log.info("edge.supervising workers=%d %s", workers, " ".join(f"{k}={v}" for k, v in listening.items()))
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        if supervisor.draining:
                            await supervisor.stop()
                            return
                        nursery.start_soon(supervisor.drain, slots)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
