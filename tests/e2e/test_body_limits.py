"""Issue 7: a hostname's maximum request body (`burrow access policy set HOST --max-body SIZE`),
enforced at the edge with real curl: a declared Content-Length over it gets 413 before anything
is forwarded; a streamed body (HTTP/1.1 chunked, HTTP/2 without a length) that outgrows it is
cut off from the origin and answered 413."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.conftest import ZONE
from tests.e2e.recording_origin import start_recording_origin
from tests.e2e.test_management import one_line_error
from tests.e2e.tunnels import run_tunnel

APP = f"capped.{ZONE}"
OPEN = f"uncapped.{ZONE}"
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def capped(edge):
    server, record = start_recording_origin()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    run_tunnel(edge, "bodies", [("capped", origin), ("uncapped", origin)])
    env = edge.connector_env("conn-bodies")
    out = edge.cli("burrow", "access", "policy", "set", APP, "--max-body", "64k", env=env).stdout
    assert "max-body: 64k" in out
    yield edge, record, env
    server.shutdown()


def upload(edge, tmp_path, host: str, marker: str, size: int, *extra: str) -> tuple[int, bytes]:
    body = tmp_path / f"{marker}.bin"
    body.write_bytes(b"x" * size)
    data = ("-T", str(body)) if "-T" not in extra else ()
    result = edge.curl(host, f"/{marker}", "-X", "POST", *data, "-o", "-", "-w", "\n%{http_code}", *extra)
    assert result.returncode == 0, result.stderr
    out, _, code = result.stdout.rpartition(b"\n")
    return int(code), out


def h2_stream(edge, marker: str, size: int) -> int:
    """curl over HTTP/2 uploading from stdin: DATA frames without a content-length."""
    result = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", str(edge.ca), "--resolve", f"{APP}:{edge.https_port}:127.0.0.1",
         "-X", "POST", "-T", "-", "-o", "/dev/null", "-w", "%{http_code}", f"https://{APP}:{edge.https_port}/{marker}"],
        input=b"y" * size, capture_output=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_declared_length_over_the_limit_never_reaches_the_origin(capped, tmp_path):
    edge, record, _ = capped
    code, page = upload(edge, tmp_path, APP, "declared-big", LIMIT + 1)
    assert code == 413 and b"larger than" in page
    code, _ = upload(edge, tmp_path, APP, "declared-big-h2", LIMIT + 1, "--http2")
    assert code == 413
    assert not record.matching("declared-big")
    code, out = upload(edge, tmp_path, APP, "declared-fits", LIMIT)
    assert code == 200 and json.loads(out)["length"] == LIMIT
    code, _ = upload(edge, tmp_path, OPEN, "other-host", LIMIT * 4)
    assert code == 200  # the limit is the capped hostname's only


def test_streamed_body_over_the_limit_is_cut(capped, tmp_path):
    edge, record, _ = capped
    code, page = upload(edge, tmp_path, APP, "chunked-big", LIMIT * 4, "-H", "Transfer-Encoding: chunked")
    assert code == 413 and b"larger than" in page
    assert h2_stream(edge, "h2-stream-big", LIMIT * 4) == 413
    assert h2_stream(edge, "h2-stream-fits", LIMIT) == 200
    for marker in ("chunked-big", "h2-stream-big"):
        assert all(not r.complete and len(r.body) <= LIMIT for r in record.matching(marker)), marker
    code, out = upload(edge, tmp_path, APP, "chunked-fits", LIMIT, "-H", "Transfer-Encoding: chunked")
    assert code == 200 and json.loads(out)["length"] == LIMIT


def test_bad_max_body_is_refused(capped):
    edge, _, env = capped
    result = edge.cli("burrow", "access", "policy", "set", APP, "--max-body", "ten", env=env, check=False)
    one_line_error(result, "invalid size 'ten'", 2)
