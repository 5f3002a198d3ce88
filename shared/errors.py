"""The error tree every Burrow component raises.

Each error says whether retrying can help, which HTTP status an eyeball should
see, and which exit code a CLI returns (2 config, 3 auth, 4 unreachable, 1 other).
"""

from __future__ import annotations


class BurrowError(Exception):
    """Root of all errors Burrow raises on purpose."""

    retryable = False
    http_status = 502
    exit_code = 1


class ConfigError(BurrowError):
    """A config, credentials or command-line value is invalid."""

    http_status = 400
    exit_code = 2


class AuthError(BurrowError):
    """A token or tunnel secret was rejected."""

    http_status = 401
    exit_code = 3


class NotFoundError(BurrowError):
    """A named account, tunnel or hostname does not exist."""

    http_status = 404


class ConflictError(BurrowError):
    """The object exists already, or belongs to someone else."""

    http_status = 409


class Unreachable(BurrowError):
    """The other side could not be reached (connect refused, DNS, timeout)."""

    retryable = True
    exit_code = 4


class ProtocolError(BurrowError):
    """The peer broke the tunnel protocol."""

    retryable = True


class TunnelUnavailable(BurrowError):
    """No live connector session can take the request."""

    retryable = True
    http_status = 502


class OriginError(BurrowError):
    """The connector could not reach or talk to the origin."""

    http_status = 502
