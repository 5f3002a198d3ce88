"""Issue 7 acceptance 3: per-hostname IP deny/allow lists and rate limits, with real curl
from distinct loopback source addresses, set through `burrow access policy`."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ZONE
from tests.e2e.test_management import one_line_error

APP = f"app.{ZONE}"
OTHER = f"down.{ZONE}"  # same tunnel, no policy: its origin is down, so the connector answers 502


def status(edge, source: str, host: str = APP, *extra: str) -> tuple[int, str]:
    """(status, headers) of one real curl request sent from loopback address `source`."""
    result = edge.curl(host, "/", "--interface", source, "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", *extra)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    return int(out[-3:]), out[:-3].lower()


@pytest.fixture
def policy(stack):
    edge, env = stack.edge, stack.env

    def set_policy(*args: str) -> str:
        return edge.cli("burrow", "access", "policy", "set", APP, *args, env=env).stdout

    yield set_policy
    edge.cli("burrow", "access", "policy", "delete", APP, env=env, check=False)


def test_deny_and_allow_ips_per_hostname(stack, policy):
    edge = stack.edge
    assert status(edge, "127.0.0.2")[0] == 200
    out = policy("--deny-ip", "127.0.0.2", "--deny-ip", "10.0.0.0/8")
    assert "deny-ip: 127.0.0.2/32" in out and "deny-ip: 10.0.0.0/8" in out
    code, headers = status(edge, "127.0.0.2")
    assert code == 403 and "burrow-error: edge" in headers
    assert status(edge, "127.0.0.3")[0] == 200
    assert status(edge, "127.0.0.2", OTHER)[0] == 502  # the policy is APP's only

    policy("--allow-ip", "127.0.0.3/32")
    assert status(edge, "127.0.0.3")[0] == 200
    assert status(edge, "127.0.0.2")[0] == 403
    assert status(edge, "127.0.0.4")[0] == 403

    shown = edge.cli("burrow", "access", "policy", "show", APP, env=stack.env).stdout
    assert "allow-ip: 127.0.0.3/32" in shown and "deny-ip" not in shown and "access: not required" in shown


def test_rate_limit_per_client_ip(stack, policy):
    edge = stack.edge
    policy("--rate-limit", "3/60s")
    assert [status(edge, "127.0.0.5")[0] for _ in range(3)] == [200, 200, 200]
    code, headers = status(edge, "127.0.0.5")
    assert code == 429
    retry_after = int(headers.split("retry-after:")[1].split()[0])
    assert 1 <= retry_after <= 60
    assert status(edge, "127.0.0.6")[0] == 200  # another client has its own window
    assert status(edge, "127.0.0.5", OTHER)[0] == 502  # another hostname has no limit


def test_policy_show_delete_and_bad_input(stack):
    edge, env = stack.edge, stack.env
    cli = lambda *args: edge.cli("burrow", "access", "policy", *args, env=env, check=False)  # noqa: E731
    one_line_error(cli("set", APP, "--deny-ip", "300.1.2.3/8"), "invalid CIDR '300.1.2.3/8'", 2)
    one_line_error(cli("set", APP, "--rate-limit", "100"), "invalid rate limit '100'", 2)
    one_line_error(cli("set", APP, "--rate-limit", "0/60s"), "at least 1 request", 2)  # checked by the edge
    one_line_error(cli("set", APP, "--allow-token", "nobody"), "service token 'nobody' not found", 1)
    one_line_error(cli("set", f"unrouted.{ZONE}", "--deny-ip", "10.0.0.1"), "is not routed by this account", 1)
    one_line_error(cli("delete", APP), f"hostname '{APP}' has no policy", 1)
    assert "rate-limit: 5/60s" in cli("set", APP, "--rate-limit", "5/1m").stdout
    assert f"Deleted the policy of {APP}" in cli("delete", APP).stdout
    assert "policy: none (public)" in cli("show", APP).stdout
