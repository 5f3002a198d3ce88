"""The registry's Access tables: tenant scoping, secrets stored as hashes, policies that follow
their route, and JWT keys that retire when no edge uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.registry.policy import Policy
from edge.registry.store import Registry
from shared.crypto import mint_secret, verify_secret
from shared.errors import ConflictError, NotFoundError

ZONE = "example.test"


def account_with_route(registry: Registry, name: str, host: str) -> tuple[str, str]:
    account, _ = registry.create_account(name)
    tunnel = registry.create_tunnel(account.id, name, mint_secret())
    registry.route_dns(account.id, tunnel.id, host, ZONE)
    return account.id, tunnel.id


def test_tokens_are_per_account_and_stored_hashed(registry: Registry, tmp_path: Path):
    a, _ = account_with_route(registry, "a", f"a.{ZONE}")
    b, _ = account_with_route(registry, "b", f"b.{ZONE}")
    token, secret = registry.create_service_token(a, "ci")
    registry.create_service_token(b, "ci")  # the same name in another account
    with pytest.raises(ConflictError):
        registry.create_service_token(a, "ci")
    assert [t.name for t in registry.list_service_tokens(a)] == ["ci"]
    stored = registry.access_snapshot().tokens[token.client_id]
    assert verify_secret(secret, stored.secret_hash) and secret not in stored.secret_hash
    assert secret.encode() not in (tmp_path / "edge.db").read_bytes()
    with pytest.raises(NotFoundError):
        registry.revoke_service_token(b, "nope")
    registry.revoke_service_token(b, "ci")
    assert token.client_id in registry.access_snapshot().tokens  # A's token is untouched
    registry.create_service_token(b, "ci")  # a revoked name can be reused


def test_policies_only_on_own_routes_and_gone_with_them(registry: Registry):
    a, tunnel_a = account_with_route(registry, "a", f"a.{ZONE}")
    b, _ = account_with_route(registry, "b", f"b.{ZONE}")
    registry.create_service_token(a, "ci")
    policy = Policy.parse({"allow_tokens": ["ci"], "deny_ips": ["10.0.0.0/8"]})
    assert registry.set_policy(a, f"A.{ZONE}.", policy) == f"a.{ZONE}"
    for call in (registry.get_policy, registry.delete_policy):
        with pytest.raises(NotFoundError, match="not routed by this account"):
            call(b, f"a.{ZONE}")
    with pytest.raises(NotFoundError, match="not routed by this account"):
        registry.set_policy(b, f"a.{ZONE}", Policy())
    with pytest.raises(NotFoundError, match="service token 'ci' not found"):
        registry.set_policy(b, f"b.{ZONE}", policy)  # A's token name means nothing to B
    assert registry.get_policy(a, f"a.{ZONE}") == (f"a.{ZONE}", policy)
    registry.delete_tunnel(a, tunnel_a)
    assert f"a.{ZONE}" not in registry.access_snapshot().policies


def test_removing_a_route_removes_its_policy(registry: Registry):
    a, _ = account_with_route(registry, "a", f"a.{ZONE}")
    registry.set_policy(a, f"a.{ZONE}", Policy.parse({"rate_limit": "1/1s"}))
    registry.remove_route(a, f"a.{ZONE}")
    assert registry.access_snapshot().policies == {}


def test_unused_jwt_keys_retire(registry: Registry):
    registry.publish_access_key("k1", {"kid": "k1"})
    registry.publish_access_key("k1", {"kid": "k1"})  # marking again keeps one entry
    assert registry.access_keys(max_age=60) == [{"kid": "k1"}]
    registry._conn.execute("UPDATE access_keys SET seen_at = '2000-01-01T00:00:00+00:00'")
    assert registry.access_keys(max_age=60) == []
