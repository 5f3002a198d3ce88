"""The connector's metric objects and how the supervisor feeds them."""

import pytest

from connector.tunnel.metrics import ConnectorMetrics, error_kind
from shared.errors import AuthError, BurrowError, ProtocolError, Unreachable

KINDS = [(None, "closed"), (AuthError("x"), "auth"), (Unreachable("x"), "unreachable"), (ProtocolError("x"), "protocol"), (BurrowError("x"), "other")]
assert KINDS


@pytest.mark.parametrize("exc, kind", KINDS, ids=[kind for _, kind in KINDS])
def test_error_kinds(exc, kind):
    assert error_kind(exc) == kind
    m = ConnectorMetrics()
    m.connection_failed(exc)
    assert m.registry.get_sample_value("burrow_connector_connection_errors_total", {"kind": kind}) == 1


def test_registries_are_private():
    a, b = ConnectorMetrics(), ConnectorMetrics()
    a.reconnects.inc()
    assert a.registry.get_sample_value("burrow_connector_reconnects_total") == 1
    assert b.registry.get_sample_value("burrow_connector_reconnects_total") == 0
