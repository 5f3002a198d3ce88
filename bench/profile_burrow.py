"""Profile Burrow's request path: py-spy samples the edge and the connector while h2load
sends small GETs through the tunnel (the suite's burrow configuration, same pinning).

Writes edge.txt / connector.txt (py-spy's collapsed stacks) and, with --svg, flame graphs
into --out, and prints each process's top functions by inclusive and by own time, as a
share of the samples and as CPU ms per request.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile_burrow.py [--seconds 8] [--h2 | --download | --upload] [--gil] [--svg] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import figures
from peers import HOST, Peers
from tunnel_bench import BenchError

RATE_HZ = 250


def top(collapsed: Path, requests: int, cpu_s: float, count: int) -> list[str]:
    """Lines: share of samples, ms per request and name, inclusive and own time."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[1].split(":")[0].rsplit("/", 1)[-1]
                  if " (" in frame else frame for frame in stack.split(";")]
        n = int(samples)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    per_request_ms = cpu_s * 1e3 / requests if requests else 0.0
    lines = [f"  {total} samples, {cpu_s:.2f} s CPU, {requests} requests: {per_request_ms:.3f} ms CPU per request"]
    for title, counter in (("inclusive", inclusive), ("own", own)):
        lines.append(f"  top {count} by {title} time:")
        for name, n in counter.most_common(count):
            lines.append(f"    {100 * n / total:5.1f}%  {per_request_ms * n / total:6.3f} ms/req  {name}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of the load and of the profile (≤ 10)")
    parser.add_argument("--h2", action="store_true", help="HTTP/2, 10 connections × 10 streams, instead of HTTP/1.1 × 50")
    parser.add_argument("--download", action="store_true", help="one curl download of a 256 MiB file instead (figures per MB)")
    parser.add_argument("--upload", action="store_true", help="one curl upload of a 256 MiB file instead (figures per MB)")
    parser.add_argument("--svg", action="store_true", help="also record flame graphs (a second, separate load)")
    parser.add_argument("--gil", action="store_true", help="sample only while holding the GIL (leaves out time in syscalls)")
    parser.add_argument("--native", action="store_true", help="also sample C frames: the compiled modules' own functions, OpenSSL, llhttp (pauses the processes per sample)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "profile")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, {0})
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="burrow-profile-")))
        peers = Peers(stack, tmp, {k: v for k, v in os.environ.items() if not k.startswith("BURROW") or k == "BURROW_PURE_PYTHON"}, 256)
        try:
            peers.start_nginx()
            peers.start_burrow(stack, tmp)
        except BenchError as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 1
        front = peers.fronts["burrow"]
        upload_file = tmp / "upload.bin"
        if args.upload:
            with upload_file.open("wb") as f:
                f.truncate(256 * 1024 * 1024)
        pids = {"edge": front.watched["front"], "connector": front.watched["back"]}
        shape = (["-c", "10", "-m", "10"] if args.h2 else ["--h1", "-c", "50"]) + ["-D", str(args.seconds)]
        formats = [("raw", "txt")] + ([("flamegraph", "svg")] if args.svg else [])
        for fmt, ext in formats:
            spies = [subprocess.Popen([py_spy, "record", *(["--native"] if args.native else ["--nonblocking"]), *(["--gil"] if args.gil else []), "-r", str(RATE_HZ), "-d", str(args.seconds + 1),
                                       "-f", fmt, "-o", str(args.out / f"{name}.{ext}"), "--pid", str(pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in pids.items()]
            cpu_before = {name: figures.cpu_seconds([pid]) for name, pid in pids.items()}
            transfer = ["-T", str(upload_file), "-H", "Expect:", "-w", "finished, requests: %{size_upload} done", front.url("/sink")] \
                if args.upload else ["-w", "finished, requests: %{size_download} done", front.url("/blob")]
            client = ["curl", "-sS", "--http1.1", "--max-time", str(args.seconds), "--cacert", str(front.ca_file), "-o", os.devnull,
                      "--resolve", f"{HOST}:{front.port}:127.0.0.1", *transfer] if args.download or args.upload else \
                ["h2load", "-t", "1", f"--connect-to=127.0.0.1:{front.port}", *shape, front.url("/small", h2=args.h2)]
            done = subprocess.run(["taskset", "-c", "1", *client], capture_output=True, text=True, timeout=args.seconds * 4 + 30)
            cpu = {name: figures.cpu_seconds([pid]) - cpu_before[name] for name, pid in pids.items()}
            for spy in spies:
                spy.wait(timeout=args.seconds + 30)
            summary = [line for line in done.stdout.replace("finished, ", "finished\n").splitlines()
                       if line.startswith(("finished", "requests:"))]
            print("\n".join(summary))
            if fmt != "raw":
                continue
            requests = int(summary[1].split(" done")[0].rsplit(" ", 1)[1]) if len(summary) == 2 else 0
            if args.download or args.upload:
                requests //= 1_000_000
                print("(a 'request' below is one MB transferred)")
            for name in pids:
                print(f"{name}:")
                print("\n".join(top(args.out / f"{name}.txt", requests, cpu[name], args.top)))
    print(f"profiles in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
