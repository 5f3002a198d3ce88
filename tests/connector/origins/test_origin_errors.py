"""connector/origins/errors.py: each origin failure has one `kind`; `connecting()` tells refused,
unreachable and too slow apart."""

import pytest
import trio

from connector.origins import errors
from connector.origins.errors import OriginRefused, OriginTimeout, OriginUnreachable, connecting, error_kind
from shared.errors import OriginError
from tests.e2e.conftest import free_port

KINDS = [
    (errors.OriginRefused("x"), "refused"),
    (errors.OriginUnreachable("x"), "unreachable"),
    (errors.OriginTimeout("x"), "timeout"),
    (errors.OriginTLSError("x"), "tls"),
    (errors.InvalidResponse("x"), "invalid_response"),
    (errors.OriginClosed("x"), "closed"),
    (errors.BodyTooLarge("x"), "body_too_large"),
    (errors.NoHealthyOrigin("x"), "no_healthy_origin"),
    (trio.BrokenResourceError("x"), "closed"),
    (ConnectionResetError(), "closed"),
    (OriginError("x"), "other"),
    (ValueError("x"), "other"),
]
assert KINDS


@pytest.mark.parametrize("exc, kind", KINDS, ids=[f"{type(exc).__name__}" for exc, _ in KINDS])
def test_error_kinds(exc, kind):
    assert error_kind(exc) == kind and kind in errors.KINDS


async def test_a_closed_port_is_refused():
    with pytest.raises(OriginRefused, match="is unreachable: Connection refused"):
        with connecting("http://127.0.0.1", 10):
            await trio.open_tcp_stream("127.0.0.1", free_port())


async def test_a_missing_unix_socket_is_unreachable_not_refused(tmp_path):
    with pytest.raises(OriginUnreachable, match="No such file or directory") as caught:
        with connecting(f"unix:{tmp_path}/none.sock", 10):
            await trio.open_unix_socket(str(tmp_path / "none.sock"))
    assert not isinstance(caught.value, OriginRefused)


async def test_a_connect_over_the_timeout_is_a_504(autojump_clock):
    with pytest.raises(OriginTimeout, match=r"did not accept a connection within 1\.5s \(connectTimeout\)") as caught:
        with connecting("http://10.0.0.1", 1.5):
            await trio.sleep_forever()
    assert caught.value.http_status == 504
