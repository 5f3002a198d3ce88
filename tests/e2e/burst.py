"""A bounded burst of admin API writes; each call is logged as it is sent and again, with the
edge's answer, as it returns (the last call sent may have landed unacknowledged).

Usage: python -m tests.e2e.burst EDGE_URL TOKEN CA_FILE ACK_LOG COUNT
Stops at the first transport error (the edge was killed) and exits 0.
"""

from __future__ import annotations

import base64
import json
import os
import sys

import httpx

ZONE = "example.test"


def main(url: str, token: str, ca: str, ack_path: str, count: int) -> None:
    client = httpx.Client(base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, verify=ca, timeout=10)
    with open(ack_path, "a", buffering=1) as acks:

        def call(kind: str, name: str, method: str, path: str, body: dict | None = None) -> None:
            acks.write(json.dumps({"op": kind, "name": name, "sent": True}) + "\n")
            response = client.request(method, path, json=body)
            if response.status_code >= 300:
                raise SystemExit(f"unexpected {response.status_code} for {kind} {name}: {response.text}")
            acks.write(json.dumps({"op": kind, "name": name, "answer": response.json()}) + "\n")

        try:
            for i in range(count):
                name = f"t{i}"
                secret = base64.b64encode(os.urandom(32)).decode()
                call("create", name, "POST", "/tunnels", {"name": name, "secret": secret})
                call("route", name, "PUT", "/routes/dns", {"tunnel": name, "hostname": f"{name}.{ZONE}"})
                if i % 3 == 2:
                    call("delete", f"t{i - 1}", "DELETE", f"/tunnels/t{i - 1}")
        except httpx.TransportError:
            return


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
