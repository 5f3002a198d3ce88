"""The connector's Prometheus metrics (`burrow_connector_*`), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

from shared.errors import AuthError, BurrowError, ProtocolError, Unreachable

# Error kinds, by exception type (first match wins); a session the edge ended is "closed".
ERROR_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (AuthError, "auth"),
    (Unreachable, "unreachable"),
    (ProtocolError, "protocol"),
    (BurrowError, "other"),
)
CLOSED = "closed"


def error_kind(exc: BaseException | None) -> str:
    """The `kind` label for a connection that failed with `exc` (None: the edge closed it)."""
    if exc is None:
        return CLOSED
    return next((kind for cls, kind in ERROR_KINDS if isinstance(exc, cls)), "other")


class ConnectorMetrics:
    """Every connector metric, registered in `registry` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_*: CPU, memory, open files (Linux)
        self.sessions = Gauge("burrow_connector_sessions", "Tunnel sessions registered with the edge right now.", registry=self.registry)
        self.reconnects = Counter(
            "burrow_connector_reconnects", "Times a tunnel connection was dialled again after a failure or a closed session.",
            registry=self.registry,
        )
        self.errors = Counter(
            "burrow_connector_connection_errors", "Tunnel connections that failed or ended, by kind.", ["kind"], registry=self.registry
        )
        for _, kind in ERROR_KINDS:
            self.errors.labels(kind)
        self.errors.labels(CLOSED)

    def connection_failed(self, exc: BaseException | None) -> None:
        self.errors.labels(error_kind(exc)).inc()
