"""What the tunnel's read size costs on TLS: CPU µs per `SSLObject.read(size)` of one small record.

A TLS read returns at most one record (≤ 16 KiB) whatever the size asked, but CPython
allocates the whole size first, so a large size is pure cost on every read: why
shared/aio.receive_records asks for one record per `SSLObject.read` and gathers records up
to the caller's size (shared/transport.py READ_SIZE) itself. In memory, no sockets:

    .venv/bin/python bench/tls_read_micro.py [--reads 20000]
"""

from __future__ import annotations

import argparse
import ssl
import time

import trustme

SIZES = (256 * 1024, 64 * 1024, 16 * 1024)
RECORD = b"x" * 300  # about one small tunnel frame batch


def connected_pair() -> tuple[ssl.SSLObject, ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    """A client and a server SSLObject after the handshake: (client, server, client's in, server's out)."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("bench.test").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_hostname="bench.test")
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        for side, peer_in, out in ((client, server_in, client_out), (server, client_in, server_out)):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            peer_in.write(out.read())
    return client, server, client_in, server_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20000, help="reads per size (default 20000)")
    reads = max(1, parser.parse_args().reads)
    client, server, client_in, server_out = connected_pair()
    for size in SIZES:
        started = time.process_time()
        for _ in range(reads):
            server.write(RECORD)
            client_in.write(server_out.read())
            client.read(size)
        print(f"read({size // 1024:>3} KiB): {(time.process_time() - started) / reads * 1e6:6.2f} µs CPU per read")


if __name__ == "__main__":
    main()
