"""A small real SOCKS5 client (socksio for the wire format, plain sockets), for the private-network
tests and bench: the exact reply code of a CONNECT, DNS queries through UDP ASSOCIATE (dig
cannot speak SOCKS), and bounded rate loops. With `direct` instead of a proxy the same traffic goes straight
to the target, as the reference. Run inside a namespace as

    python -m tests.e2e.socks_client connect PROXY HOST PORT
    python -m tests.e2e.socks_client dns PROXY SERVER NAME
    python -m tests.e2e.socks_client http-rate PROXY|direct HOST PORT --seconds S --concurrency C
    python -m tests.e2e.socks_client dns-rate PROXY|direct SERVER NAME --seconds S

Each prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

from dnslib import QTYPE, DNSRecord
from socksio.socks5 import (
    SOCKS5AuthMethod,
    SOCKS5AuthMethodsRequest,
    SOCKS5Command,
    SOCKS5CommandRequest,
    SOCKS5Connection,
)

TIMEOUT = 10.0
MAX_OPERATIONS = 100_000  # every rate loop stops here at the latest


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _recv_reply(sock: socket.socket) -> bytes:
    """One complete SOCKS5 reply (its length depends on the address type)."""
    data = b""
    while True:
        if len(data) >= 5:
            size = {1: 4, 4: 16, 3: data[4] + 1}.get(data[3], 4)
            if len(data) >= 4 + size + 2:
                return data
        chunk = sock.recv(512)
        if not chunk:
            raise ConnectionError("the proxy closed the connection")
        data += chunk


def socks_open(proxy: tuple[str, int], command: SOCKS5Command, host: str, port: int) -> tuple[socket.socket, int, tuple]:
    """A control connection after `command` to host:port: (socket, reply code, bound address)."""
    sock = socket.create_connection(proxy, timeout=TIMEOUT)
    conn = SOCKS5Connection()
    conn.send(SOCKS5AuthMethodsRequest([SOCKS5AuthMethod.NO_AUTH_REQUIRED]))
    sock.sendall(conn.data_to_send())
    conn.receive_data(sock.recv(2))
    conn.send(SOCKS5CommandRequest.from_address(command, (host, port)))
    sock.sendall(conn.data_to_send())
    reply = conn.receive_data(_recv_reply(sock))
    return sock, reply.reply_code[0], (reply.addr, reply.port)


def connect(proxy: tuple[str, int], host: str, port: int) -> dict:
    started = time.monotonic()
    sock, code, _ = socks_open(proxy, SOCKS5Command.CONNECT, host, port)
    sock.close()
    return {"reply": code, "seconds": round(time.monotonic() - started, 3)}


def _udp_header(host: str, port: int) -> bytes:
    return b"\x00\x00\x00\x01" + socket.inet_aton(host) + port.to_bytes(2, "big")


class DnsThroughSocks:
    """One UDP association: queries to `server`:53 through the proxy."""

    def __init__(self, proxy: tuple[str, int] | None, server: str) -> None:
        self.server = server
        self.control = None
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.settimeout(TIMEOUT)
        if proxy is None:
            self.relay = None
            return
        self.control, code, relay = socks_open(proxy, SOCKS5Command.UDP_ASSOCIATE, "0.0.0.0", 0)
        if code != 0:
            raise ConnectionError(f"UDP ASSOCIATE refused with reply {code}")
        self.relay = relay

    def query(self, name: str, ident: int) -> DNSRecord:
        question = DNSRecord.question(name, "A")
        question.header.id = ident
        if self.relay is None:
            self.udp.sendto(question.pack(), (self.server, 53))
        else:
            self.udp.sendto(_udp_header(self.server, 53) + question.pack(), self.relay)
        while True:
            data, _ = self.udp.recvfrom(65535)
            payload = data if self.relay is None else data[10:]
            answer = DNSRecord.parse(payload)
            if answer.header.id == ident:
                return answer

    def close(self) -> None:
        self.udp.close()
        if self.control is not None:
            self.control.close()


def dns(proxy: tuple[str, int], server: str, name: str) -> dict:
    client = DnsThroughSocks(proxy, server)
    try:
        answer = client.query(name, 4242)
    finally:
        client.close()
    return {"rcode": answer.header.rcode, "a": [str(rr.rdata) for rr in answer.rr if rr.rtype == QTYPE.A]}


def _http_once(proxy: tuple[str, int] | None, host: str, port: int) -> int:
    if proxy is None:
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
    else:
        sock, code, _ = socks_open(proxy, SOCKS5Command.CONNECT, host, port)
        if code != 0:
            sock.close()
            raise ConnectionError(f"CONNECT refused with reply {code}")
    with sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        received = 0
        while chunk := sock.recv(65536):
            received += len(chunk)
    return received


def http_rate(proxy, host: str, port: int, seconds: float, concurrency: int) -> dict:
    """Connections/s: each one CONNECT (or a direct connect), one small GET, read to the close."""
    deadline = time.monotonic() + seconds
    counts = {"done": 0, "failed": 0}
    lock = threading.Lock()

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                if counts["done"] + counts["failed"] >= MAX_OPERATIONS:
                    return
            try:
                ok = _http_once(proxy, host, port) > 0
            except OSError:
                ok = False
            with lock:
                counts["done" if ok else "failed"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {"connections": counts["done"], "failed": counts["failed"], "seconds": round(elapsed, 2),
            "per_second": round(counts["done"] / elapsed, 1)}


def dns_rate(proxy, server: str, name: str, seconds: float) -> dict:
    """Queries/s, one at a time over one association (or straight to the server)."""
    client = DnsThroughSocks(proxy, server)
    deadline = time.monotonic() + seconds
    done = failed = 0
    started = time.monotonic()
    try:
        while time.monotonic() < deadline and done + failed < MAX_OPERATIONS:
            try:
                answer = client.query(name, (done + failed) % 65536)
                done += answer.header.rcode == 0
                failed += answer.header.rcode != 0
            except OSError:
                failed += 1
    finally:
        client.close()
    elapsed = time.monotonic() - started
    return {"queries": done, "failed": failed, "seconds": round(elapsed, 2), "per_second": round(done / elapsed, 1)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["connect", "dns", "http-rate", "dns-rate"])
    parser.add_argument("proxy", help="HOST:PORT of the SOCKS5 proxy, or --direct")
    parser.add_argument("host")
    parser.add_argument("arg")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    proxy = None if args.proxy == "direct" else _hostport(args.proxy)
    if args.command == "connect":
        result = connect(proxy, args.host, int(args.arg))
    elif args.command == "dns":
        result = dns(proxy, args.host, args.arg)
    elif args.command == "http-rate":
        result = http_rate(proxy, args.host, int(args.arg), args.seconds, args.concurrency)
    else:
        result = dns_rate(proxy, args.host, args.arg, args.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
