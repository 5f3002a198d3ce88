"""Private-network flows from `burrow access socks`: authenticate, find the route, open a `private`
stream on a warp-routing connector of its tunnel, then pipe bytes.

The client upgrades a request to the edge's own hostname to `burrow-private`
(`shared.private_flows`). `decide` is pure (snapshot, credential, target in; the
tunnel and the networks the credential may reach, or a refusal, out). Every refusal
carries a SOCKS5 reply code and is answered at once; nothing reaches a connector
unless the account routes the address and the credential may reach it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import trio

from edge.access.gate import CLIENT_ID, CLIENT_SECRET, REFRESH_INTERVAL
from edge.registry.models import PrivateSnapshot
from edge.registry.policy import IpNetwork
from edge.registry.store import Registry
from edge.routing.metrics import EdgeMetrics
from edge.routing.proxy import Exchange, send_page
from edge.routing.router import Router
from shared import private_flows as flows
from shared.crypto import hash_secret, verify_secret
from shared.errors import AuthError, BurrowError, ConfigError, ProtocolError, TunnelUnavailable
from shared.events import RequestHead
from shared.logs import ACCESS_LOGGER, log_access
from shared.protocol import KIND_PRIVATE
from shared.registration import WARP_ROUTING
from shared.relay import relay

log = logging.getLogger(__name__)
access_log = logging.getLogger(ACCESS_LOGGER)

CONNECT_TIMEOUT = 15.0  # seconds for the connector's answer (its own dial timeout is 10 s)
EMPTY = PrivateSnapshot({}, {}, {})


@dataclass(frozen=True)
class Refusal:
    code: int  # SOCKS5 reply code
    message: str


@dataclass(frozen=True)
class Route:
    """Where an admitted flow goes: the tunnel, and the networks the connector may dial for it."""

    tunnel_id: str
    network: str  # the route that matched ("-" for a hostname)
    allowed: tuple[IpNetwork, ...]


@dataclass(frozen=True)
class Credential:
    account_id: str
    subject: str  # "account" or the service token's name
    token: str | None = None  # the service token's name, when one was used


def decide(snapshot: PrivateSnapshot, credential: Credential, target: flows.Target) -> list[Route] | Refusal:
    """The routes a flow may take, in the order to try them (several only for a hostname)."""
    routes = snapshot.routes.get(credential.account_id, ())
    policies = snapshot.policies.get(credential.account_id, ())
    admitted = [net for net, names in policies if credential.token in names] if credential.token is not None else []
    ip = target.ip
    if ip is None:
        by_tunnel: dict[str, list[IpNetwork]] = {}
        for net, tunnel_id in routes:
            by_tunnel.setdefault(tunnel_id, []).append(net)
        if credential.token is not None:
            by_tunnel = {
                tunnel: [net for net in admitted if any(_inside(net, route) for route in nets)]
                for tunnel, nets in by_tunnel.items()
            }
        found = [Route(tunnel, "-", tuple(nets)) for tunnel, nets in by_tunnel.items() if nets]
        return found or Refusal(flows.NETWORK_UNREACHABLE, f"no private network of this account may be reached by name for {target.host}")
    route = next(((net, tunnel) for net, tunnel in routes if ip.version == net.version and ip in net), None)
    if route is None:
        return Refusal(flows.NETWORK_UNREACHABLE, f"no route of this account covers {ip}")
    net, tunnel_id = route
    if credential.token is None:
        return [Route(tunnel_id, str(net), (net,))]
    allowed = [policy for policy in admitted if ip.version == policy.version and ip in policy and _inside(policy, net)]
    if not allowed:
        return Refusal(flows.NOT_ALLOWED, f"service token {credential.token} may not reach {ip}")
    return [Route(tunnel_id, str(net), tuple(allowed))]


def _inside(inner: IpNetwork, outer: IpNetwork) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)


class PrivateNetworks:
    """Serves `burrow-private` upgrades on the edge's own hostnames."""

    def __init__(self, registry: Registry, router: Router, metrics: EdgeMetrics | None = None) -> None:
        self.registry = registry
        self.router = router
        self.metrics = metrics
        self.snapshot = EMPTY

    async def refresh(self) -> None:
        self.snapshot = await trio.to_thread.run_sync(self.registry.private_snapshot)

    async def run(self) -> None:
        """Poll the registry for writes made by other edges."""
        while True:
            await trio.sleep(REFRESH_INTERVAL)
            await self.refresh()

    async def handle(self, exchange: Exchange) -> None:
        started = time.monotonic()
        flow = {"kind": "private", "client": exchange.client[0], "subject": "-", "network": "-", "protocol": "-",
                "address": "-", "tunnel": "-", "reply": flows.GENERAL_FAILURE, "bytes_in": 0, "bytes_out": 0}  # fmt: skip
        try:
            await self._serve(exchange, flow)
        finally:
            flow["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
            flow["reply"] = flows.SOCKS_REPLIES[flow["reply"]]
            if self.metrics is not None:
                self.metrics.private_flow_done(flow)
            if access_log.isEnabledFor(logging.INFO):
                log_access(access_log, flow)

    async def _serve(self, exchange: Exchange, flow: dict) -> None:
        try:
            target = flows.parse_target_header(exchange.head.header(flows.TARGET_HEADER))
        except ConfigError as exc:
            await _refuse(exchange, flow, Refusal(flows.GENERAL_FAILURE, str(exc)))
            return
        flow["protocol"], flow["address"] = target.protocol, target.authority
        credential = await self._credential(exchange.head)
        if isinstance(credential, Refusal):
            await _refuse(exchange, flow, credential)
            return
        flow["subject"] = credential.subject
        routes = decide(self.snapshot, credential, target)
        if isinstance(routes, Refusal):
            await _refuse(exchange, flow, routes)
            return
        refusal = Refusal(flows.NETWORK_UNREACHABLE, "")
        for route in routes:
            flow["tunnel"], flow["network"] = route.tunnel_id, route.network
            refusal = await self._forward(exchange, flow, credential, target, route)
            if refusal is None:
                return
        await _refuse(exchange, flow, refusal)

    async def _credential(self, head: RequestHead) -> Credential | Refusal:
        """The account credential (`Authorization: Bearer`) or a service token; a refusal if neither is valid."""
        client_id, secret = head.header(CLIENT_ID), head.header(CLIENT_SECRET)
        if client_id is not None or secret is not None:
            token = self.snapshot.tokens.get((client_id or b"").decode("latin-1"))
            stored = token.secret_hash if token is not None else hash_secret("")  # same cost for unknown ids
            if not verify_secret(secret or b"", stored) or token is None:
                return Refusal(flows.NOT_ALLOWED, "the service token is not valid (unknown or revoked)")
            return Credential(token.account_id, token.name, token.name)
        scheme, _, bearer = (head.header(b"authorization") or b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not bearer.strip():
            return Refusal(flows.NOT_ALLOWED, "send the account credential or a service token")
        try:
            account = await trio.to_thread.run_sync(self.registry.authenticate, bearer.strip())
        except AuthError:
            return Refusal(flows.NOT_ALLOWED, "the account credential was rejected")
        return Credential(account.id, "account")

    async def _forward(
        self, exchange: Exchange, flow: dict, credential: Credential, target: flows.Target, route: Route
    ) -> Refusal | None:
        """Carry the flow over a warp-routing session of the route's tunnel; a refusal when it did not start."""
        try:
            connection = self.router.pick(route.tunnel_id, feature=WARP_ROUTING)
        except TunnelUnavailable:
            return Refusal(flows.NETWORK_UNREACHABLE, "the tunnel serving this network has no connector with warp-routing enabled")
        except BurrowError as exc:  # busy
            return Refusal(flows.GENERAL_FAILURE, str(exc))
        head = RequestHead(
            target.method, b"/", target.authority.encode(), target.protocol.encode(),
            ((flows.NETWORKS_HEADER, ",".join(map(str, route.allowed)).encode()), (flows.SUBJECT_HEADER, credential.subject.encode())),
            True,
        )
        try:
            stream = await connection.open_stream(head, KIND_PRIVATE)
        except (BurrowError, trio.BrokenResourceError) as exc:
            return Refusal(flows.GENERAL_FAILURE, f"the tunnel failed: {exc}")
        async with stream:
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    response = await stream.receive_response()
            except trio.TooSlowError:
                return Refusal(flows.TTL_EXPIRED, "the connector did not answer in time")
            except ProtocolError as exc:
                return Refusal(flows.GENERAL_FAILURE, f"the tunnel failed: {exc}")
            if response.status != 200:
                body = b""
                while len(body) < 1024 and (chunk := await stream.receive()):
                    body += chunk
                return Refusal(flows.reply_code(response.headers), body.decode("utf-8", "replace").strip() or "refused by the connector")
            if self.metrics is not None:
                self.metrics.private_flow_opened(route.tunnel_id)
            flow["reply"] = flows.SUCCEEDED
            try:
                raw, first = await exchange.switch_protocols(response)
                await relay(raw, stream, first)
            finally:
                flow["bytes_in"], flow["bytes_out"] = stream.bytes_sent, stream.bytes_received
                if self.metrics is not None:
                    self.metrics.private_flow_closed(route.tunnel_id)
        return None


async def _refuse(exchange: Exchange, flow: dict, refusal: Refusal) -> None:
    flow["reply"] = refusal.code
    log.debug("private.refused client=%s address=%s reply=%d reason=%s", exchange.client[0], flow["address"], refusal.code, refusal.message)
    status = flows.REPLY_STATUS[refusal.code]
    await send_page(exchange, status, "edge", refusal.message, ((flows.REPLY_HEADER, str(refusal.code).encode()),))
