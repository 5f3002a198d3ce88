"""`burrow-edge serve`: every listener in one nursery, plus the registry snapshot refresher."""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import uuid
from collections.abc import Iterator

import trio

from edge.api import create_api
from edge.certs import CertStore
from edge.dns import DnsServer
from edge.https import ALPN, HttpsFrontend
from edge.proxy import Proxy
from edge.registry import Registry
from edge.router import Router
from edge.sessions import TunnelListener
from shared.aio import single_errors
from shared.config import EdgeConfig, format_hostport
from shared.crypto import TUNNEL_ALPN
from shared.errors import ConfigError
from shared.files import write_private

log = logging.getLogger(__name__)

ZONE_REFRESH_INTERVAL = 5.0  # picks up writes made by other processes (CLI)
LISTEN_FILE = "listen.json"


class ZoneRefresher:
    """Keeps the router's zone snapshot in step with the registry.

    The admin API awaits `refresh` after each write; `run` also polls, for
    writes made by other processes (`burrow-edge account revoke`).
    """

    def __init__(self, registry: Registry, router: Router, zone_names: list[str]) -> None:
        self.registry = registry
        self.router = router
        self.zone_names = zone_names

    async def refresh(self) -> None:
        zones = await trio.to_thread.run_sync(self.registry.zones, self.zone_names)
        self.router.update_zones(zones)

    async def run(self) -> None:
        while True:
            await trio.sleep(ZONE_REFRESH_INTERVAL)
            await self.refresh()


@contextlib.contextmanager
def _binding(purpose: str, address: tuple[str, int]) -> Iterator[None]:
    """Turn a failure to bind into one clear line (port in use, or below 1024 without privileges)."""
    try:
        with single_errors():
            yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen for {purpose} on {format_hostport(address)}: {reason}") from exc


async def _open_tls_listeners(
    purpose: str, address: tuple[str, int], context: ssl.SSLContext
) -> list[trio.SSLListener]:
    host, port = address
    with _binding(purpose, address):
        listeners = await trio.open_tcp_listeners(port, host=host or None)
    return [trio.SSLListener(listener, context, https_compatible=True) for listener in listeners]


def _bound(listeners: list[trio.SSLListener]) -> tuple[str, int]:
    host, port, *_ = listeners[0].transport_listener.socket.getsockname()
    return host, port


async def serve(cfg: EdgeConfig, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the edge until cancelled; `started()` reports the bound addresses."""
    registry = Registry.open(cfg.registry_path)
    try:
        certs = CertStore.load(cfg.certs_dir)
        edge_id = str(uuid.uuid4())
        stale = registry.cleanup_connections(edge_id)  # rows of earlier runs: their sessions are gone
        router = Router(registry.zones(list(cfg.zones)))
        refresher = ZoneRefresher(registry, router, list(cfg.zones))
        https_listeners = await _open_tls_listeners("HTTPS", cfg.https_listen, certs.server_context(ALPN))
        tunnel_context = certs.server_context([TUNNEL_ALPN])
        tunnel_context.minimum_version = ssl.TLSVersion.TLSv1_3
        tunnel_listeners = await _open_tls_listeners("tunnels", cfg.tunnel_listen, tunnel_context)
        addresses = {"https": _bound(https_listeners), "tunnel": _bound(tunnel_listeners)}
        tunnel_endpoint = format_hostport((cfg.public_ip, addresses["tunnel"][1]))

        def edge_info() -> dict:
            return {"zone": cfg.zone, "zones": list(cfg.zones), "tunnel_endpoint": tunnel_endpoint}

        api = create_api(registry, edge_info, refresher.refresh, live=router, edge_id=edge_id)
        proxy = Proxy(router, api, frozenset({*cfg.public_ips, *cfg.zones}))
        frontend = HttpsFrontend(proxy)
        sessions = TunnelListener(registry, router, edge_id=edge_id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(refresher.run)
            nursery.start_soon(trio.serve_listeners, frontend.handle, https_listeners)
            nursery.start_soon(trio.serve_listeners, sessions.handle, tunnel_listeners)
            dns = DnsServer(lambda: router.zones, cfg.public_ips)  # the router's snapshot, read per query
            with _binding("DNS", cfg.dns_listen):
                addresses["dns"] = await nursery.start(dns.serve, cfg.dns_listen)
            listening = {name: format_hostport(addr) for name, addr in addresses.items()}
            write_private(cfg.home / LISTEN_FILE, json.dumps(listening))
            log.info("edge.listening https=%s tunnel=%s zone=%s edge=%s stale_connections_removed=%d", listening["https"], listening["tunnel"], ",".join(cfg.zones), edge_id, stale)
            task_status.started(addresses)
    finally:
        registry.close()
