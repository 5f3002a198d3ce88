"""HTTP/2 visitors through the real edge, connector and origin: curl --http2 and h2load."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import h2.config
import h2.connection
import pytest
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, SettingsFrame

from tests.e2e.conftest import ZONE
from tests.e2e.origin import BLOCK, pattern_block
from tests.h2_client import open_h2, visitor

MIB = 1024 * 1024


def test_request_over_http2_reaches_origin_with_everything_preserved(stack):
    result = stack.edge.curl(
        f"app.{ZONE}", "/p/a%20b?q=1&status=201", "--http2", "-i", "-X", "PATCH",
        "-H", "X-Custom: One", "-H", "X-Custom: Two", "-H", "Cookie: a=1", "-H", "Cookie: b=2",
        "--data-binary", "hello",
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/2 201")
    assert "x-origin: echo" in head
    assert "set-cookie: a=1" in head and "set-cookie: b=2" in head
    echo = json.loads(body)
    assert (echo["method"], echo["target"], echo["body_length"]) == ("PATCH", "/p/a%20b?q=1&status=201", 5)
    headers = echo["headers"]
    assert [v for k, v in headers if k == "x-custom"] == ["One", "Two"]
    assert dict(headers)["host"] == f"app.{ZONE}:{stack.edge.https_port}"
    assert dict(headers)["cookie"] == "a=1; b=2"
    assert dict(headers)["x-forwarded-proto"] == "https"


def test_edge_pages_and_api_answer_over_http2(stack):
    missing = stack.edge.curl(f"nowhere.{ZONE}", "/", "--http2", "-i")
    assert missing.stdout.startswith(b"HTTP/2 404")
    assert b"burrow-error: edge" in missing.stdout
    api = subprocess.run(
        ["curl", "-sS", "--http2", "-w", "\n%{http_version}", "--cacert", str(stack.edge.ca), f"{stack.edge.url}/api/v1/edge"],
        capture_output=True, text=True,
    )
    body, _, version = api.stdout.rpartition("\n")
    assert version == "2" and "error" in json.loads(body)


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_head_requests_to_edge_pages_and_api_get_the_head_only(stack, version):
    for host in (ZONE, f"nowhere.{ZONE}"):  # the edge's API, an edge error page
        answer = stack.edge.curl(host, "/", version, "-I")
        assert answer.returncode == 0, answer.stderr
        status, _, rest = answer.stdout.partition(b"\r\n")
        assert status.split()[1] == b"404" and b"content-length: " in rest.lower()
    assert "Traceback" not in stack.edge.proc.log()


def test_large_bodies_stream_both_ways_over_http2(stack, tmp_path):
    size_mib = 100
    download = stack.edge.curl(f"app.{ZONE}", f"/download?mb={size_mib}", "--http2", "-o", str(tmp_path / "down"), timeout=240)
    assert download.returncode == 0, download.stderr
    expected = hashlib.sha256()
    block = pattern_block()
    for _ in range(size_mib * MIB // BLOCK):
        expected.update(block)
    assert hashlib.sha256((tmp_path / "down").read_bytes()).hexdigest() == expected.hexdigest()

    upload_file = tmp_path / "up"
    with open(upload_file, "wb") as handle:
        for i in range(size_mib):
            handle.write(hashlib.sha256(str(i).encode()).digest() * (MIB // 32))
    upload = stack.edge.curl(f"app.{ZONE}", "/upload", "--http2", "--data-binary", f"@{upload_file}", timeout=240)
    assert upload.returncode == 0, upload.stderr
    answer = json.loads(upload.stdout)
    assert answer == {"sha256": hashlib.sha256(upload_file.read_bytes()).hexdigest(), "length": size_mib * MIB}
    assert stack.edge.proc.peak_rss_mib() < 150


def test_hundred_concurrent_streams_share_one_connection(stack, tmp_path):
    count = 100
    args = ["--http2", "--parallel", "--parallel-max", str(count), "-w", "%{num_connects} %{http_version}\n"]
    for i in range(count):
        args += ["-o", str(tmp_path / f"r{i}"), f"https://app.{ZONE}:{stack.edge.https_port}/id/{i}"]
    result = subprocess.run(
        ["curl", "-sS", "--max-time", "60", "--cacert", str(stack.edge.ca),
         "--resolve", f"app.{ZONE}:{stack.edge.https_port}:127.0.0.1", *args],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert sum(int(n) for n in lines[0::2]) == 1  # one TCP connection carried them all
    assert set(lines[1::2]) == {"2"}
    targets = [json.loads((tmp_path / f"r{i}").read_text())["target"] for i in range(count)]
    assert targets == [f"/id/{i}" for i in range(count)]


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load missing: `make system-deps` installs nghttp2-client")
def test_h2load_gets_no_errors(stack):
    # Acceptance 1 as written: 2,000 requests per connection, under the edge's
    # 10,000 (h2load 1.52 does not reconnect after the graceful GOAWAY).
    port = stack.edge.https_port
    command = [
        "h2load", "-n", "20000", "-c", "10", "-m", "10",
        f"--connect-to=127.0.0.1:{port}", f"https://app.{ZONE}:{port}/h2load",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    print(" ".join(command), "\n", result.stdout, sep="")
    assert result.returncode == 0, result.stdout + result.stderr
    requests = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
        result.stdout,
    )
    assert requests.groups() == ("20000", "20000", "20000", "20000", "0", "0", "0")
    assert "status codes: 20000 2xx" in result.stdout
    assert stack.edge.proc.alive() and stack.connector.alive()


# HTTP/2 attacks against the real edge process (acceptance 7) --------------------------------

MEMORY_GROWTH_MIB = 50  # generous: each attack below is cut off long before it could cost this


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+) kB", status).group(1)) / 1024 for key in ("VmRSS", "VmHWM")}


@asynccontextmanager
async def edge_memory_bounded(stack, attack: str):
    """Sample the edge's resident memory while the body runs; print the figures and bound the growth."""
    pid = stack.edge.proc.pid
    before = memory_mib(pid)
    peak = before["VmRSS"]

    async def sample():
        nonlocal peak
        while True:
            peak = max(peak, memory_mib(pid)["VmRSS"])
            await trio.sleep(0.02)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        yield
        nursery.cancel_scope.cancel()
    after = memory_mib(pid)
    peak = max(peak, after["VmRSS"])
    print(
        f"\n{attack}: edge VmRSS {before['VmRSS']:.1f} MiB before, {peak:.1f} peak, {after['VmRSS']:.1f} after;"
        f" VmHWM {before['VmHWM']:.1f} -> {after['VmHWM']:.1f} MiB"
    )
    assert peak - before["VmRSS"] < MEMORY_GROWTH_MIB, f"{attack} grew the edge by {peak - before['VmRSS']:.1f} MiB"
    assert stack.edge.proc.alive()


def app_visitor(stack):
    """An h2 client of app.example.test on its own connection to the edge."""
    return visitor(stack.edge.https_port, stack.edge.ca, f"app.{ZONE}")


@asynccontextmanager
async def attacked(stack, attack: str):
    """Memory watch plus a bystander on another connection that must keep getting answers throughout."""
    statuses = []
    async with app_visitor(stack) as bystander, edge_memory_bounded(stack, attack):

        stop = trio.Event()  # not a cancel: a TLS write cancelled half-way would break the bystander's stream

        async def keep_asking():
            while not stop.is_set():
                statuses.append((await bystander.request(f"/bystander/{len(statuses)}")).status)
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_asking)
            yield
            await trio.sleep(0.2)
            stop.set()
        assert (await bystander.request("/after")).status == 200
    print(f"{attack}: the bystander got {len(statuses)} answers during the attack: {set(statuses)}")
    assert statuses and set(statuses) == {200}


async def test_rapid_reset_is_cut_off_and_memory_stays_bounded(stack):
    async with attacked(stack, "rapid reset"), app_visitor(stack) as attacker:
        assert (await attacker.request("/")).status == 200
        with trio.fail_after(20):
            for sent in range(1, 50_001):  # bounded: the edge must give up long before
                stream_id = attacker.start("/hang?delay=5")
                attacker.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
                try:
                    await attacker.flush()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                await trio.sleep(0)
                if attacker.goaway is not None or attacker.closed.is_set():
                    break
            await attacker.closed.wait()
        print(f"\nrapid reset: GOAWAY after {sent} streams opened and reset")
        assert attacker.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_continuation_flood_is_cut_off_and_memory_stays_bounded(stack):
    async with attacked(stack, "CONTINUATION flood"), app_visitor(stack) as attacker:
        assert (await attacker.request("/")).status == 200  # SETTINGS exchanged: nothing else interleaves
        stream_id = attacker.h2.get_next_available_stream_id()
        await attacker.send_raw(HeadersFrame(stream_id, data=b"\x00" * 100).serialize())  # no END_HEADERS
        frame = ContinuationFrame(stream_id, data=b"\x00" * 16_000).serialize()
        with trio.fail_after(20):
            try:
                for sent in range(1, 10_001):  # 160 MB if the edge never stopped it
                    await attacker.send_raw(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the edge hung up
            await attacker.closed.wait()
        print(f"\nCONTINUATION flood: closed after {sent} frames of 16,000 bytes were written")
        assert attacker.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_hpack_bomb_is_cut_off_and_memory_stays_bounded(stack):
    # One 4,000-byte field enters the HPACK dynamic table; 10,000 one-byte references to it
    # would decode to 40 MB from a 14 KB header block.
    bomb = [("x-bomb", "b" * 4000)] * 10_000
    async with attacked(stack, "HPACK bomb"), app_visitor(stack) as attacker:
        attacker.start("/", headers=bomb)
        await attacker.flush()
        with trio.fail_after(10):
            await attacker.closed.wait()
        assert attacker.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_settings_flood_is_cut_off_and_memory_stays_bounded(stack):
    # 1,500 SETTINGS in one write (one TLS record, so one read at the edge): 1,500 acks owed
    # at once, over the edge's 1,000. All of it is read, so the close is a clean GOAWAY.
    flood = SettingsFrame(0).serialize() * 1_500
    async with attacked(stack, "SETTINGS flood"), app_visitor(stack) as attacker:
        assert (await attacker.request("/")).status == 200
        await attacker.send_raw(flood)
        with trio.fail_after(10):
            await attacker.closed.wait()
        assert attacker.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert "reason=control frames queued faster than read" in stack.edge.proc.log()


async def test_ping_flood_from_a_visitor_that_never_reads_is_bounded(stack):
    # The attacker never reads its PING acks: once the edge's writes to it block, the
    # edge stops reading from it too, so the flood backs up in the attacker's socket.
    pings = b"".join(PingFrame(0, opaque_data=b"%08d" % i).serialize() for i in range(1000))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    async with attacked(stack, "PING flood (never reading)"):
        stream = await open_h2(stack.edge.https_port, stack.edge.ca, f"app.{ZONE}")
        await stream.send_all(client.data_to_send())
        written, hung_up, progress = 0, False, trio.current_time()
        with trio.move_on_after(4):
            try:
                for _ in range(5_000):  # at most 5 million PINGs, 85 MB
                    await stream.send_all(pings)
                    written, progress = written + 1, trio.current_time()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                hung_up = True
        stalled = trio.current_time() - progress
        print(f"\nPING flood: {written * 1000} PINGs written, then writes blocked for {stalled:.1f} s")
        assert hung_up or stalled > 1  # the edge stopped reading from it
        with trio.move_on_after(1) as cleanup:
            cleanup.shield = True
            await trio.aclose_forcefully(stream)
