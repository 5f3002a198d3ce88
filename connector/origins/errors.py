"""Why an origin failed: one `OriginError` subclass per `kind` of `burrow_connector_origin_errors_total`,
and `connecting()`, which turns trio's and the OS's connect errors into them."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from shared.errors import OriginError


class OriginUnreachable(OriginError):
    """The origin could not be reached: DNS, no route, no such unix socket."""

    kind = "unreachable"


class OriginRefused(OriginUnreachable):
    """Nothing listens at the origin's address."""

    kind = "refused"


class OriginTimeout(OriginError):
    """The origin did not accept a connection or finish the TLS handshake in time."""

    http_status = 504
    kind = "timeout"


class OriginTLSError(OriginError):
    """The TLS handshake with the origin failed: certificate, protocol or ALPN."""

    kind = "tls"


class InvalidResponse(OriginError):
    """The origin broke HTTP/1.1 or HTTP/2: a malformed response, a reset stream, a GOAWAY."""

    kind = "invalid_response"


class OriginClosed(OriginError):
    """The origin closed the connection before its response was complete."""

    kind = "closed"


class BodyTooLarge(OriginError):
    """A body that had to be buffered (disableChunkedEncoding) is over MAX_BUFFERED_BODY."""

    http_status = 413
    kind = "body_too_large"


class NoHealthyOrigin(OriginError):
    """Every origin of a pool failed its health check (or the request's connects)."""

    http_status = 503
    kind = "no_healthy_origin"


OTHER = "other"
KINDS = (
    OriginRefused.kind, OriginUnreachable.kind, OriginTimeout.kind, OriginTLSError.kind,
    InvalidResponse.kind, OriginClosed.kind, BodyTooLarge.kind, NoHealthyOrigin.kind, OTHER,
)


def error_kind(exc: BaseException) -> str:
    """The `kind` label of an origin failure; a connection broken under us counts as `closed`."""
    if isinstance(exc, OriginError):
        return getattr(exc, "kind", OTHER)
    if isinstance(exc, (trio.BrokenResourceError, ConnectionError)):
        return OriginClosed.kind
    return OTHER


@contextmanager
def connecting(url: str, timeout: float) -> Iterator[None]:
    """Run a connect to origin `url` within `timeout` (connectTimeout); fail with one of the errors above."""
    try:
        with trio.fail_after(timeout):
            yield
    except trio.TooSlowError:
        raise OriginTimeout(f"origin {url} did not accept a connection within {timeout:g}s (connectTimeout)") from None
    except OSError as exc:
        errors = _attempt_errnos(exc)
        error = OriginRefused if errors == {errno.ECONNREFUSED} else OriginUnreachable
        reason = "; ".join(sorted(os.strerror(code) for code in errors)) or exc.strerror or str(exc)
        raise error(f"origin {url} is unreachable: {reason}") from exc


def _attempt_errnos(exc: OSError) -> set[int]:
    """The errno of each address trio tried ("Connection refused" rather than "all attempts … failed")."""
    attempts = getattr(exc.__cause__, "exceptions", ()) or (exc,)
    return {attempt.errno for attempt in attempts if isinstance(attempt, OSError) and attempt.errno}
