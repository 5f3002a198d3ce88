"""A TCP listener that records every connection it accepts (one line: the peer), then closes it:
proof of whether anything reached a private address.

    python -m tests.e2e.accept_recorder PORT ADDRESS [ADDRESS ...]
"""

from __future__ import annotations

import socket
import sys
import threading


def serve(address: str, port: int) -> None:
    with socket.create_server((address, port)) as server:
        while True:
            conn, peer = server.accept()
            print(f"accepted {address}:{port} from {peer[0]}:{peer[1]}", flush=True)
            conn.close()


def main(port: int, addresses: list[str]) -> None:
    threads = [threading.Thread(target=serve, args=(address, port), daemon=True) for address in addresses]
    for thread in threads:
        thread.start()
    print("recording", flush=True)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
