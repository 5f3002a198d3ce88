"""The gate's pure parts: policy parsing, the rate limiter, the decision order, sessions, passwords."""

from __future__ import annotations

import pytest

from edge.access import login
from edge.access.gate import Admit, RateLimiter, Refuse, decide
from edge.registry.models import AccessSnapshot, ServiceToken
from edge.registry.policy import Policy, RateLimit
from shared.crypto import hash_secret
from shared.errors import ConfigError
from shared.events import RequestHead

HOST = "app.example.test"
OWNER = "acct-a"
SESSIONS = login.Sessions(b"k" * 32)


def snapshot(policy: Policy, **tokens: tuple[str, str]) -> AccessSnapshot:
    live = {cid: ServiceToken(cid, account, name, "", hash_secret("s3cret")) for cid, (account, name) in tokens.items()}
    return AccessSnapshot({HOST: (OWNER, policy)}, live, {(OWNER, "ann@example.test"): "hash"})


def head(*headers: tuple[bytes, bytes], target: bytes = b"/x?y=1") -> RequestHead:
    return RequestHead(b"GET", target, HOST.encode(), headers=headers)


def verdict(policy: Policy, ip: str = "127.0.0.2", *headers, limiter=None, now=1000.0, **tokens):
    return decide(snapshot(policy, **tokens), HOST, ip, head(*headers), limiter or RateLimiter(), SESSIONS, now)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"deny_ips": ["10.0.0.0/33"]}, "invalid CIDR '10.0.0.0/33'"),
        ({"allow_ips": "10.0.0.1"}, "must be a list of strings"),
        ({"rate_limit": "100"}, "use N/WINDOW"),
        ({"rate_limit": "100/forever"}, "invalid rate limit window 'forever'"),
        ({"rate_limit": "100/2d"}, "invalid rate limit window"),
        ({"rate_limit": "10/500ms"}, "1s-24h window"),
        ({"allow_emails": ["nobody"]}, "invalid email address"),
        ({"max_body": "ten"}, "invalid size 'ten'"),
        ({"max_body": "0"}, "from 1 byte to 1 TiB"),
        ({"max_body": "2048g"}, "from 1 byte to 1 TiB"),
        ({"max_body": True}, "invalid size"),
        ({"allow": []}, "unknown policy field 'allow'"),
        ([], "must be a JSON object"),
    ],
)
def test_bad_policies_are_refused(raw, message):
    with pytest.raises(ConfigError, match=message):
        Policy.parse(raw)


def test_policy_round_trips_and_access_follows_tokens_or_emails():
    policy = Policy.parse({"allow_ips": ["10.1.2.3"], "rate_limit": "100/1m", "allow_emails": ["Ann@Example.test"]})
    assert Policy.parse(policy.to_json()) == policy
    assert policy.to_json()["allow_ips"] == ["10.1.2.3/32"] and str(policy.rate_limit) == "100/60s"
    assert policy.allow_emails == ("ann@example.test",) and policy.requires_access
    assert not Policy.parse({"deny_ips": ["::1"]}).requires_access
    sized = Policy.parse({"max_body": "10M"})
    assert sized.max_body == 10 * 1024**2 and sized.to_json()["max_body"] == "10m"
    assert Policy.parse(sized.to_json()) == sized and not sized.requires_access
    assert Policy.parse({"max_body": "1500"}).to_json()["max_body"] == "1500"
    assert Policy.parse({"max_body": "1GiB"}).max_body == Policy.parse({"max_body": "1g"}).max_body == 1024**3


def test_ip_lists_come_first():
    deny = Policy.parse({"deny_ips": ["127.0.0.2"], "allow_tokens": ["ci"]})
    assert verdict(deny).status == 403
    assert verdict(deny, "127.0.0.3").status == 403  # on to Access, which refuses without a token
    allow = Policy.parse({"allow_ips": ["192.0.2.0/24", "2001:db8::/32"]})
    assert verdict(allow, "192.0.2.9") == Admit()
    assert verdict(allow, "2001:db8::1") == Admit()
    assert "denied from 127.0.0.2" in verdict(allow).message


def test_rate_limit_window_and_retry_after():
    limiter = RateLimiter()
    policy = Policy(rate_limit=RateLimit(2, 60.0))
    assert [verdict(policy, limiter=limiter, now=t) for t in (0.0, 1.0)] == [Admit(), Admit()]
    refused = verdict(policy, limiter=limiter, now=20.5)
    assert refused.status == 429 and refused.headers == ((b"retry-after", b"40"),)
    assert verdict(policy, "127.0.0.3", limiter=limiter, now=20.5) == Admit()  # per client IP
    assert verdict(policy, limiter=limiter, now=60.0) == Admit()  # a new window


def test_rate_limiter_memory_is_bounded(monkeypatch):
    from edge.access import gate

    monkeypatch.setattr(gate, "MAX_TRACKED_CLIENTS", 10)
    limiter, limit = RateLimiter(), RateLimit(1, 60.0)
    for i in range(50):
        limiter.hit((HOST, f"10.0.0.{i}"), limit, now=float(i))
    assert len(limiter._windows) <= 10


def test_service_tokens():
    policy = Policy(allow_tokens=("ci",))
    good = ((b"burrow-access-client-id", b"id1.access"), (b"burrow-access-client-secret", b"s3cret"))
    assert verdict(policy, "127.0.0.2", *good, **{"id1.access": (OWNER, "ci")}) == Admit("ci")
    assert verdict(policy, "127.0.0.2", *good, **{"id1.access": (OWNER, "other")}).status == 403  # not allowed here
    assert verdict(policy, "127.0.0.2", *good, **{"id1.access": ("acct-b", "ci")}).status == 403  # another account's
    bad = (good[0], (b"burrow-access-client-secret", b"guess"))
    assert verdict(policy, "127.0.0.2", *bad, **{"id1.access": (OWNER, "ci")}).status == 403
    assert verdict(policy, "127.0.0.2", *good).status == 403  # revoked: not in the snapshot


def test_browsers_are_sent_to_login_only_where_people_may_sign_in():
    html = (b"accept", b"text/html,application/xhtml+xml")
    refused = verdict(Policy(allow_emails=("ann@example.test",)), "127.0.0.2", html)
    assert refused == Refuse(302, "sign in first", ((b"location", b"/cdn-cgi/access/login?redirect_url=%2Fx%3Fy%3D1"),))
    assert verdict(Policy(allow_tokens=("ci",)), "127.0.0.2", html).status == 403


def test_sessions_are_bound_to_host_and_expire():
    policy = Policy(allow_emails=("ann@example.test",))
    cookie = SESSIONS.mint("ann@example.test", HOST, now=1000.0)
    with_cookie = (b"cookie", f"a=1; burrow_access={cookie}".encode())
    assert verdict(policy, "127.0.0.2", with_cookie) == Admit("ann@example.test", "ann@example.test")
    assert verdict(policy, "127.0.0.2", with_cookie, now=1000.0 + login.SESSION_LIFETIME).status == 403
    assert SESSIONS.verify(cookie, "other.example.test", 1000.0) is None
    assert login.Sessions(b"x" * 32).verify(cookie, HOST, 1000.0) is None
    assert SESSIONS.verify(cookie[:-2] + "AA", HOST, 1000.0) is None
    assert login.without_session_cookie((with_cookie,)) == ((b"cookie", b"a=1"),)


def test_passwords_are_scrypt_hashed():
    stored = login.hash_password("correct horse")
    assert stored.startswith("scrypt$16384$8$1$") and "correct horse" not in stored
    assert login.verify_password("correct horse", stored)
    assert not login.verify_password("wrong horse", stored)
    assert not login.verify_password("x", "garbage")


@pytest.mark.parametrize("url", ["https://evil.test/", "//evil.test/", "/\\evil.test", "evil"])
def test_login_never_redirects_off_site(url):
    assert login._safe_redirect(url) == "/"
