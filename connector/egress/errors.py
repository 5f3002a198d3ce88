"""What can go wrong on the way through a proxy."""

from __future__ import annotations

from shared.errors import AuthError, Unreachable


class ProxyAuthError(AuthError):
    """The proxy refused our credentials (or wants some): retrying with the same ones cannot help."""


class ProxyRefused(Unreachable):
    """The proxy answered but did not open the connection (denied, no route, target down…)."""
