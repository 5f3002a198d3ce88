"""connector/ingress/pools.py and `service: pool:NAME`: pools validated by name and key,
rules checked against them, each pool's health checks connecting as its first rule does."""

from __future__ import annotations

import pytest

from connector.ingress.pools import HealthCheck
from connector.ingress.rules import Ingress, IngressError
from connector.ingress.services import HttpService, PoolService, UnixService

RULES = [{"hostname": "app.test", "service": "pool:web", "originRequest": {"connectTimeout": "2s"}}, {"service": "http_status:404"}]


def build(pools, rules=RULES) -> Ingress:
    return Ingress.from_rules(rules, None, "config.yml", pools)


def test_a_pool_with_every_key():
    health = {"path": "/healthz", "interval": "2s", "timeout": "500ms", "healthyThreshold": 1,
              "unhealthyThreshold": 4, "expectStatus": ["2xx", 301, "400-404"]}
    ingress = build({"web": {"origins": ["http://10.0.0.1:8000", "https://b.internal", "unix:/run/c.sock"],
                             "policy": "least_requests", "healthCheck": health}})
    pool = ingress.pools["web"]
    assert ingress.rules[0].service == PoolService("web") and str(ingress.rules[0].service) == "pool:web"
    assert pool.origins == (HttpService("http", "10.0.0.1", 8000), HttpService("https", "b.internal", 443), UnixService("/run/c.sock"))
    assert pool.policy == "least_requests" and pool.options.connect_timeout == 2.0
    assert pool.health_check == HealthCheck("/healthz", 2.0, 0.5, 1, 4, ((200, 299), (301, 301), (400, 404)))
    assert [pool.health_check.expects(code) for code in (204, 301, 302, 404, 500)] == [True, True, False, True, False]


def test_defaults():
    pool = build({"web": {"origins": ["http://a"], "healthCheck": {}}}).pools["web"]
    assert pool.policy == "round_robin" and pool.health_check == HealthCheck()
    assert build({"web": {"origins": ["http://a"]}}).pools["web"].health_check is None


BAD = [
    ({"web": {"origins": []}}, "pools.web.origins: must be a list of origin URLs"),
    ({"web": {"origins": "http://a"}}, "pools.web.origins: must be a list of origin URLs"),
    ({"web": {"origins": ["tcp://a:1"]}}, "pools.web.origins[1]: 'tcp://a:1' is not an HTTP origin"),
    ({"web": {"origins": ["http://a", "http://a:80"]}}, "pools.web.origins[2]: 'http://a:80' is listed twice"),
    ({"web": {"origins": ["a:80"]}}, "pools.web.origins[1]: 'a:80' is an invalid address"),
    ({"web": {"origins": ["http://a"], "policy": "rr"}}, "pools.web.policy: must be round_robin, least_requests or random, not 'rr'"),
    ({"web": {"origins": ["http://a"], "policies": "x"}}, "pools.web.policies: unknown key (did you mean 'policy'?)"),
    ({"web": {"origins": ["http://a"], "healthCheck": "/h"}}, "pools.web.healthCheck: must be a mapping"),
    ({"web": {"origins": ["http://a"], "healthCheck": {"path": "h"}}}, "pools.web.healthCheck.path: must be a path such as /healthz"),
    ({"web": {"origins": ["http://a"], "healthCheck": {"interval": 5}}}, "pools.web.healthCheck.interval: duration 5 needs a unit"),
    ({"web": {"origins": ["http://a"], "healthCheck": {"interval": "0s"}}}, "pools.web.healthCheck.interval: must be longer than 0"),
    ({"web": {"origins": ["http://a"], "healthCheck": {"interval": "1s", "timeout": "2s"}}},
     "pools.web.healthCheck.timeout: must not be longer than interval (1s)"),
    ({"web": {"origins": ["http://a"], "healthCheck": {"healthyThreshold": 0}}}, "pools.web.healthCheck.healthyThreshold: must be a whole number from 1"),
    ({"web": {"origins": ["http://a"], "healthCheck": {"expectStatus": "2XX"}}}, "pools.web.healthCheck.expectStatus: must be a status (200)"),
    ({"web": {"origins": ["http://a"], "healthCheck": {"expectStatus": "300-200"}}}, "pools.web.healthCheck.expectStatus: '300-200' is an empty range"),
    ({"web": {"origins": ["http://a"], "healthCheck": {"unhealthy": 3}}},
     "pools.web.healthCheck.unhealthy: unknown key (did you mean 'unhealthyThreshold'?)"),
    ({"web": []}, "pools.web: must be a mapping (origins, policy, healthCheck), not list"),
    ({"web": {"origins": ["http://a"]}, "a b": {"origins": ["http://a"]}}, "pools.a b: a pool name is letters"),
]


@pytest.mark.parametrize("pools, message", BAD, ids=[message.split(":")[0] + str(i) for i, (_, message) in enumerate(BAD)])
def test_bad_pools_are_named_by_pool_and_key(pools, message):
    with pytest.raises(IngressError) as info:
        build(pools)
    assert any(problem.startswith(f"config.yml: {message}") for problem in info.value.problems), info.value.problems


def test_a_rule_naming_an_undefined_pool():
    with pytest.raises(IngressError) as info:
        build({"api": {"origins": ["http://a"]}})
    assert info.value.problems == ["config.yml: ingress rule 1: service: pool 'web' is not defined under pools: (defined: api)"]


def test_an_unused_pool_is_a_warning():
    ingress = build({"web": {"origins": ["http://a"]}, "spare": {"origins": ["http://b"]}})
    assert ingress.warnings == ("config.yml: pools.spare: no rule uses it (service: pool:spare)",)
    assert set(ingress.pools) == {"web"}


def test_a_bad_pool_name_in_a_service():
    with pytest.raises(IngressError, match="service: 'pool:' needs a pool name"):
        build({}, [{"service": "pool:"}])


def test_health_checks_connect_as_the_first_rule_using_the_pool():
    rules = [
        {"hostname": "a.test", "service": "pool:web", "originRequest": {"noTLSVerify": True}},
        {"hostname": "b.test", "service": "pool:web"},
        {"service": "http_status:404"},
    ]
    assert build({"web": {"origins": ["https://a"]}}, rules).pools["web"].options.no_tls_verify
