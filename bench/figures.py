"""One function per figure: run the client (h2load or curl, pinned to the client core) against
a Front and return (value or None, note). Every run is bounded by its duration and a timeout."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from peers import HOST, Front

MB = 1_000_000
SLACK = 15.0  # seconds a client may take beyond its own bound before it is killed


@dataclass(frozen=True)
class Params:
    load_s: int  # seconds of each h2load run
    mb: int  # MiB per download/upload
    rate: int  # total req/s of the latency run
    transfer_cap: float  # seconds per curl transfer at most
    client: tuple[str, ...]  # e.g. ("taskset", "-c", "1")
    upload_file: Path


def _resolve(front: Front, h2: bool = False) -> list[str]:
    port = front.h2_port if h2 and front.h2_port else front.port
    return [f"--connect-to=127.0.0.1:{port}"]


def _h2load(front: Front, p: Params, args: list[str], h2: bool = False, timeout: float = 0) -> tuple[str, str]:
    # -T: h2load 1.52 can hang at the end of a timed run on a connection still in its TLS handshake
    cmd = [*p.client, "h2load", "-t", "1", "-T", f"{p.load_s + 5}s", *_resolve(front, h2), *args, front.url("/small", h2=h2)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=(timeout or p.load_s) + SLACK)
    except subprocess.TimeoutExpired:
        return "", f"h2load killed after {(timeout or p.load_s) + SLACK:.0f}s"
    problem = "" if done.returncode == 0 else f"h2load exited {done.returncode}: {done.stderr.strip()[-300:]}"
    return done.stdout, problem


def _h2load_rate(out: str, problem: str, what: str) -> tuple[float | None, str]:
    """req/s from h2load's summary, counting only 2xx answers."""
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out)
    if not (finished and codes and done):
        return None, f"{what}: no h2load summary {problem}".strip()
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    ok, total = int(codes.group(1)), int(done.group(1))
    note = f"{what}: {total - ok} of {total} requests not 2xx" if ok < total else ""
    return (ok / seconds if seconds else None), note


def small_get_h1(front: Front, p: Params) -> tuple[float | None, str]:
    """req/s, HTTP/1.1, 50 keep-alive connections, one request in flight each."""
    out, problem = _h2load(front, p, ["--h1", "-c", "50", "-m", "1", "-D", str(p.load_s)])
    return _h2load_rate(out, problem, "small GET h1")


def small_get_h2(front: Front, p: Params, h1_rate: float | None) -> tuple[float | None, str]:
    """req/s, HTTP/2, 10 connections × 10 streams. A front that ends connections after
    N requests gets a request count (≤ N per connection) sized from its h1 rate instead of a duration."""
    if not front.speaks_h2():
        return None, ""
    base = ["-c", "10", "-m", "10"]
    if front.max_requests_per_conn is None:
        out, problem = _h2load(front, p, [*base, "-D", str(p.load_s)], h2=True)
    else:
        out, problem = _h2load(front, p, [*base, "-n", str(h2_request_count(front, p, h1_rate))], h2=True, timeout=4 * p.load_s)
    return _h2load_rate(out, problem, "small GET h2")


def h2_request_count(front: Front, p: Params, h1_rate: float | None) -> int:
    """The requests `small_get_h2` sends to a front that ends connections after N requests."""
    assert front.max_requests_per_conn is not None, front.name
    return int(min(front.max_requests_per_conn * 10, max(100, (h1_rate or 100) * p.load_s)))


def latency_at_rate(front: Front, p: Params) -> tuple[tuple[float, float] | None, str]:
    """(p50, p99) in ms of small GETs sent at p.rate req/s over 10 HTTP/1.1 connections."""
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        out, problem = _h2load(front, p, ["--h1", "-c", "10", "--rps", str(max(1, p.rate // 10)),
                                          "-D", str(p.load_s),
                                          "--log-file", log.name])
        rows = [line.split("\t") for line in Path(log.name).read_text().splitlines()]
    micros = sorted(int(row[2]) for row in rows if len(row) == 3 and row[1].startswith("2"))
    if not micros:
        return None, f"latency: no successful request {problem}".strip()
    expected = p.rate * p.load_s
    note = f"latency: only {len(micros)} of ~{expected} requests answered 2xx" if len(micros) < 0.9 * expected else ""
    pick = lambda fraction: micros[min(len(micros) - 1, int(fraction * len(micros)))] / 1000  # noqa: E731
    return (pick(0.5), pick(0.99)), note


def _curl(front: Front, p: Params, path: str, extra: list[str]) -> dict:
    fields = ["http_code", "size_download", "size_upload", "speed_download", "speed_upload"]
    tls = ["--cacert", str(front.ca_file)] if front.ca_file else []
    cmd = [*p.client, "curl", "-sS", "--http1.1", "--max-time", str(p.transfer_cap),
           "--resolve", f"{HOST}:{front.port}:127.0.0.1", *tls,
           "-w", " ".join(f"%{{{name}}}" for name in fields), *extra, front.url(path)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=p.transfer_cap + SLACK)
    except subprocess.TimeoutExpired:
        return {**dict.fromkeys(fields, 0.0), "error": f"curl killed after {p.transfer_cap + SLACK:.0f}s"}
    values = done.stdout.split()[-len(fields):]
    stats = dict(zip(fields, map(float, values))) if len(values) == len(fields) else dict.fromkeys(fields, 0.0)
    stats["error"] = done.stderr.strip() if done.returncode else ""
    return stats


def download(front: Front, p: Params) -> tuple[float | None, str]:
    """MB/s of one GET of the p.mb MiB file (a partial transfer at the cap still counts, with a note)."""
    stats = _curl(front, p, "/blob", ["-o", os.devnull])
    want = p.mb * 1024 * 1024
    if stats["http_code"] != 200 or not stats["size_download"]:
        return None, f"download: status {stats['http_code']:.0f} {stats['error']}".strip()
    note = "" if stats["size_download"] == want else f"download: {stats['size_download'] / MB:.0f} of {want / MB:.0f} MB in {p.transfer_cap:.0f}s"
    return stats["speed_download"] / MB, note


def upload(front: Front, p: Params) -> tuple[float | None, str]:
    """MB/s of one PUT of p.mb MiB to /sink (the origin stores the whole body, then answers)."""
    stats = _curl(front, p, "/sink", ["-T", str(p.upload_file), "-H", "Expect:", "-o", os.devnull])
    want = p.mb * 1024 * 1024
    if not stats["size_upload"]:
        return None, f"upload: status {stats['http_code']:.0f} {stats['error']}".strip()
    note = "" if stats["size_upload"] == want and 200 <= stats["http_code"] < 300 else (
        f"upload: {stats['size_upload'] / MB:.0f} of {want / MB:.0f} MB, status {stats['http_code']:.0f}")
    return stats["speed_upload"] / MB, note


def new_tls_connections(front: Front, p: Params) -> tuple[float | None, str]:
    """Serial new TLS connections/s, one GET each (curl, no session resumption), for p.load_s seconds."""
    if not front.tls:
        return None, ""
    cmd = [*p.client, "curl", "-s", "--http1.1", "--no-sessionid", "-H", "Connection: close",
           "--resolve", f"{HOST}:{front.port}:127.0.0.1", "--cacert", str(front.ca_file),
           "-o", os.devnull, "-w", "%{stderr}%{http_code}\\n", front.url("/small?[1-1000000]")]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ok = total = 0
    try:
        for line in proc.stderr:
            total += 1
            ok += line.strip() == "200"
            if time.perf_counter() - started >= p.load_s:
                break
    finally:
        elapsed = time.perf_counter() - started
        proc.kill()
        proc.wait()
    note = f"new TLS connections: {total - ok} of {total} not 200" if ok < total else ""
    return (ok / elapsed if ok else None), note


# ------------------------------------------------------------ server-side resources


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of `pids` (those still alive), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def reset_peak_rss(pids: list[int]) -> None:
    """Reset VmHWM (Linux: write 5 to clear_refs) so the next reading is this load's peak."""
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass


def peak_rss_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else None


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
