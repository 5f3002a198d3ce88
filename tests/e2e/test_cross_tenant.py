"""Issue 7 acceptance 6: account B can neither read, change, route nor receive traffic for account A's
hostnames; a deleted tunnel's hostname stops resolving and routing, and no other tunnel takes it
over without an explicit `route dns`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import ZONE
from tests.e2e.test_dns import dig
from tests.e2e.test_management import one_line_error

HOST = f"tenant-a.{ZONE}"


def run(edge, env: dict, name: str, service: str):
    """Tunnel `name` of the account in `env`, serving HOST (whether or not it routes there) with `service`."""
    config = Path(env["BURROW_HOME"]) / f"{name}.yml"
    config.write_text(f"tunnel: {name}\ningress:\n  - hostname: {HOST}\n    service: {service}\n  - service: http_status:404\n")
    proc = edge.start(["burrow", "tunnel", "run", "--config", config, "--ha-connections", 1, name], name, env)
    proc.wait_for_log(r"tunnel\.registered index=")
    return proc


def status(edge, *extra: str) -> int:
    result = edge.curl(HOST, "/", "-o", "/dev/null", "-w", "%{http_code}", *extra)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.fixture(scope="module")
def tenants(edge):
    a, b = edge.login("tenant-a"), edge.login("tenant-b")
    edge.cli("burrow", "tunnel", "create", "ta", env=a)
    edge.cli("burrow", "tunnel", "route", "dns", "ta", HOST, env=a)
    edge.cli("burrow", "tunnel", "create", "tb", env=b)
    a_token = dict(l.split(": ", 1) for l in edge.cli("burrow", "access", "token", "create", "ci", env=a).stdout.splitlines())
    b_token = dict(l.split(": ", 1) for l in edge.cli("burrow", "access", "token", "create", "ci", env=b).stdout.splitlines())
    edge.cli("burrow", "access", "policy", "set", HOST, "--allow-token", "ci", "--deny-ip", "127.0.0.9", env=a)
    proc_a = run(edge, a, "ta", "http_status:201")
    proc_b = run(edge, b, "tb", "http_status:418")  # claims HOST in its ingress, but HOST is not routed to it
    return a, b, a_token, b_token, proc_a, proc_b


def token(creds: dict) -> list[str]:
    return ["-H", f"Burrow-Access-Client-Id: {creds['Client-Id']}", "-H", f"Burrow-Access-Client-Secret: {creds['Client-Secret']}"]


def test_b_cannot_read_change_or_route_a_hostname(edge, tenants):
    a, b, *_ = tenants
    for args in (["show", HOST], ["delete", HOST], ["set", HOST, "--rate-limit", "1/60s"]):
        one_line_error(edge.cli("burrow", "access", "policy", *args, env=b, check=False), "is not routed by this account", 1)
    one_line_error(
        edge.cli("burrow", "tunnel", "route", "dns", "tb", HOST, "--overwrite-dns", env=b, check=False), "belongs to another account", 1
    )
    shown = edge.cli("burrow", "access", "policy", "show", HOST, env=a).stdout
    assert "allow-token: ci" in shown and "deny-ip: 127.0.0.9/32" in shown  # unchanged


def test_b_gets_no_traffic_and_its_token_does_not_open_a_hostname(edge, tenants):
    a, b, a_token, b_token, _, _ = tenants
    assert status(edge, *token(a_token)) == 201  # A's tunnel answers, never B's 418
    assert status(edge) == 403
    assert status(edge, *token(b_token)) == 403  # B's token named "ci" is not A's "ci"
    assert status(edge, *token({**b_token, "Client-Secret": a_token["Client-Secret"]})) == 403
    edge.cli("burrow", "access", "token", "revoke", "ci", env=b)  # revoking stays inside B's account
    assert status(edge, *token(a_token)) == 201


def test_deleted_tunnel_hostname_is_not_taken_over_silently(edge, tenants):
    a, b, _, b_token, proc_a, _ = tenants
    assert dig(edge, HOST, "CNAME").answer
    proc_a.stop()
    edge.cli("burrow", "tunnel", "delete", "--force", "ta", env=a)
    assert status(edge) == 404  # stops routing, although B's connector lists HOST in its ingress
    reply = dig(edge, HOST, "CNAME")
    assert not reply.answer and reply.status == "NXDOMAIN"  # stops resolving
    one_line_error(edge.cli("burrow", "access", "policy", "show", HOST, env=a, check=False), "is not routed by this account", 1)
    edge.cli("burrow", "tunnel", "route", "dns", "tb", HOST, env=b)  # an explicit route takes it
    assert status(edge) == 418
    assert "policy: none (public)" in edge.cli("burrow", "access", "policy", "show", HOST, env=b).stdout  # A's policy went with A's route
