"""One worker of `burrow-edge serve --workers N`: `python -m edge.workers.child FD`, FD its
end of the control channel; its listening sockets are inherited (numbers in `start`).

It serves the edge (`edge.server.serve`) on those sockets, reports the tunnels it holds
sessions of, answers scrapes, and drains when told (or on its own SIGTERM/SIGINT, as when
systemd signals the whole group). It exits at once when the supervisor is gone.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from dataclasses import replace
from pathlib import Path

import trio
from prometheus_client import Counter, generate_latest

from edge import server
from edge.routing.metrics import EdgeMetrics
from edge.visitors.http1 import Http1Limits
from edge.visitors.https import FrontendOptions
from edge.visitors.udp_port import FlowLimits
from edge.workers.control import ControlChannel
from edge.workers.peers import Peers
from shared import logs
from shared.aio import Signal
from shared.commands import reported_errors
from shared.edge_config import load_edge_config

log = logging.getLogger(__name__)


def serve_options(options: dict) -> dict:
    """The keyword arguments of `edge.server.serve` from their JSON form (see `edge.cli.serve`)."""
    return {
        **options,
        "http1_limits": Http1Limits(**options["http1_limits"]),
        "frontend_options": FrontendOptions(**options["frontend_options"]),
        "flow_limits": FlowLimits(**options["flow_limits"]),
    }


class Worker:
    def __init__(self, control: ControlChannel, start: dict) -> None:
        self.control = control
        self.index = start["index"]
        self.metrics = EdgeMetrics()
        forwarded = Counter(
            "burrow_edge_forwarded_requests", "Visitor requests sent to another worker (it held the tunnel's sessions).",
            registry=self.metrics.registry,
        )
        self.peers = Peers(self.index, Path(start["directory"]), forwarded.inc)
        self.shutdown = trio.Event()
        self.closing = trio.Event()
        self.tunnels: frozenset[str] = frozenset()
        self.reported: frozenset[str] | None = None
        self.changed = Signal()
        sockets = {name: [socket.socket(fileno=fd) for fd in fds] for name, fds in start["sockets"].items()}
        self.role = server.WorkerRole(
            start["edge_id"], sockets, self.peers, self.tunnels_changed, self.barrier, self.registry_changed
        )

    def tunnels_changed(self, tunnels: frozenset[str]) -> None:
        self.tunnels = tunnels
        self.changed.fire()

    async def barrier(self) -> None:
        await self.control.send({"type": "idle"})
        await self.closing.wait()

    async def registry_changed(self) -> None:
        await self.control.send({"type": "refresh"})

    async def report_tunnels(self) -> None:
        while True:
            if self.reported != self.tunnels:
                self.reported = self.tunnels
                await self.control.send({"type": "tunnels", "ids": sorted(self.reported)})
                continue
            await self.changed.wait()

    async def obey(self, nursery: trio.Nursery) -> None:
        """Follow the supervisor's messages; its end of the channel closing means it is gone."""
        self.nursery = nursery
        while (message := await self.control.receive()) is not None:
            kind = message["type"]
            if kind == "peers":
                self.peers.update({int(index): frozenset(ids) for index, ids in message["held"].items()})
            elif kind == "scrape":
                await self.control.send({"type": "metrics", "text": generate_latest(self.metrics.registry).decode()})
            elif kind == "refresh" and self.role.refresh is not None:
                self.nursery.start_soon(self.role.refresh)
            elif kind == "drain":
                self.shutdown.set()
            elif kind == "close":
                self.closing.set()
            elif kind == "stop":
                break
        log.info("edge.worker_stopping worker=%d", self.index)
        nursery.cancel_scope.cancel()

    async def signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self.shutdown.set()  # the supervisor, signalled too, coordinates the drain


async def run(control_fd: int) -> None:
    control = ControlChannel(socket.socket(fileno=control_fd))
    start = await control.receive()
    if start is None:
        return
    level, logfile, fmt, access_log = start["logs"]
    logs.configure(level, Path(logfile) if logfile else None, fmt, access_log)
    cfg = load_edge_config(Path(start["home"]))
    if start["index"] != 0:  # DNS (and ACME's dns-01 answers) live in worker 0
        cfg = replace(cfg, dns_listen=None, acme_directory=None)
    worker = Worker(control, start)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.obey, nursery)
        nursery.start_soon(worker.signals)

        async def edge(task_status=trio.TASK_STATUS_IGNORED) -> None:
            await server.serve(
                cfg, shutdown=worker.shutdown, grace_period=start["grace"], metrics=worker.metrics, worker=worker.role,
                task_status=task_status, **serve_options(start["options"]),
            )
            nursery.cancel_scope.cancel()  # drained

        addresses = await nursery.start(edge)
        await control.send({"type": "ready", "addresses": {name: list(address) for name, address in addresses.items()}})
        nursery.start_soon(worker.report_tunnels)


def main() -> None:
    with reported_errors():
        trio.run(run, int(sys.argv[1]))


if __name__ == "__main__":
    main()
