"""`pools:`: named groups of origins that rules use with `service: pool:NAME`, each with
a balancing policy and an optional active health check, validated into immutable `Pool`s.

Pure: raw YAML → `Pool`s and the issues found, each naming its key below `pools`
(e.g. "web.healthCheck.interval").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector.ingress.origin_request import Invalid, Issue, OriginRequest, duration, one_of, unknown_key, whole
from connector.ingress.services import POOL_NAME, HttpService, RuleError, UnixService, parse_service
from shared.yaml_lines import line_of, type_name

POLICIES = ("round_robin", "least_requests", "random")
POOL_KEYS = ("origins", "policy", "healthCheck")


@dataclass(frozen=True)
class HealthCheck:
    """`healthCheck`: GET `path` on each origin every `interval`; an answer within `timeout` whose
    status is in `expect_status` passes. `unhealthy_threshold` failures in a row take an origin
    out of rotation, `healthy_threshold` passes in a row bring it back."""

    path: str = "/"
    interval: float = 10.0
    timeout: float = 2.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    expect_status: tuple[tuple[int, int], ...] = ((200, 399),)  # inclusive ranges

    def expects(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expect_status)


@dataclass(frozen=True)
class Pool:
    """A validated pool. `options`: the `originRequest` of the first rule that uses it, which is
    also how its health checks connect."""

    name: str
    origins: tuple[HttpService | UnixService, ...]
    policy: str = "round_robin"
    health_check: HealthCheck | None = None
    options: OriginRequest = OriginRequest()


def _path(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"/[!-~]*", value):
        raise Invalid(f"must be a path such as /healthz, not {value!r}")
    return value


def _status_ranges(value: Any) -> tuple[tuple[int, int], ...]:
    """200, "2xx", "200-299", or a list of them."""
    ranges = []
    for item in value if isinstance(value, list) and value else [value]:
        text = str(item) if isinstance(item, (int, str)) and not isinstance(item, bool) else ""
        if match := re.fullmatch(r"([1-5])xx", text):
            ranges.append((int(match[1]) * 100, int(match[1]) * 100 + 99))
        elif match := re.fullmatch(r"([1-5][0-9][0-9])(?:-([1-5][0-9][0-9]))?", text):
            low, high = int(match[1]), int(match[2] or match[1])
            if low > high:
                raise Invalid(f"{item!r} is an empty range")
            ranges.append((low, high))
        else:
            raise Invalid(f"must be a status (200), a class (2xx), a range (200-399) or a list of them, not {item!r}")
    return tuple(ranges)


def _positive(value: Any) -> float:
    seconds = duration(value)
    if seconds <= 0:
        raise Invalid(f"must be longer than 0, not {value!r}")
    return seconds


HEALTH_KEYS: dict[str, tuple[str, Any]] = {
    "path": ("path", _path),
    "interval": ("interval", _positive),
    "timeout": ("timeout", _positive),
    "healthyThreshold": ("healthy_threshold", whole(1, 1000, "a whole number from 1 to 1000")),
    "unhealthyThreshold": ("unhealthy_threshold", whole(1, 1000, "a whole number from 1 to 1000")),
    "expectStatus": ("expect_status", _status_ranges),
}


def parse(raw: Any, line: int | None) -> tuple[dict[str, Pool], list[Issue]]:
    """The valid pools of `raw` (the `pools:` mapping) by name, and every issue found."""
    if not isinstance(raw, Mapping):
        return {}, [Issue("", f"must be a mapping of pool names to pools, not {type_name(raw)}", line)]
    pools, issues = {}, []
    for name, body in raw.items():
        found = _pool(str(name), body, line_of(raw, name))
        if isinstance(found, Pool):
            pools[found.name] = found
        else:
            issues += found
    return pools, issues


def _pool(name: str, raw: Any, line: int | None) -> Pool | list[Issue]:
    if not POOL_NAME.fullmatch(name):
        return [Issue(name, "a pool name is letters, digits, _ . or -", line)]
    if not isinstance(raw, Mapping):
        return [Issue(name, f"must be a mapping ({', '.join(POOL_KEYS)}), not {type_name(raw)}", line)]
    issues = [Issue(f"{name}.{key}", unknown_key(key, POOL_KEYS), line_of(raw, key)) for key in raw if key not in POOL_KEYS]
    origins, origin_issues = _origins(name, raw.get("origins"), line_of(raw, "origins") or line)
    issues += origin_issues
    policy = raw.get("policy", "round_robin")
    try:
        one_of(*POLICIES)(policy)
    except Invalid as exc:
        issues.append(Issue(f"{name}.policy", str(exc), line_of(raw, "policy")))
    health = None
    if "healthCheck" in raw:
        health, health_issues = _health_check(f"{name}.healthCheck", raw["healthCheck"], line_of(raw, "healthCheck"))
        issues += health_issues
    return issues or Pool(name, origins, policy, health)


def _origins(name: str, raw: Any, line: int | None) -> tuple[tuple, list[Issue]]:
    if not isinstance(raw, list) or not raw:
        return (), [Issue(f"{name}.origins", f"must be a list of origin URLs (e.g. [http://10.0.0.1:8000]), not {raw!r}", line)]
    origins, issues = [], []
    for index, text in enumerate(raw, 1):
        where = f"{name}.origins[{index}]"
        try:
            service = parse_service(text)
        except RuleError as exc:
            issues.append(Issue(where, str(exc), line))
            continue
        if not isinstance(service, (HttpService, UnixService)):
            issues.append(Issue(where, f"{text!r} is not an HTTP origin (http://, https://, unix:, unix+tls:)", line))
        elif service in origins:
            issues.append(Issue(where, f"{text!r} is listed twice", line))
        else:
            origins.append(service)
    return tuple(origins), issues


def _health_check(where: str, raw: Any, line: int | None) -> tuple[HealthCheck | None, list[Issue]]:
    if not isinstance(raw, Mapping):
        return None, [Issue(where, f"must be a mapping ({', '.join(HEALTH_KEYS)}), not {type_name(raw)}", line)]
    values, issues = {}, []
    for key, value in raw.items():
        if key not in HEALTH_KEYS:
            issues.append(Issue(f"{where}.{key}", unknown_key(key, HEALTH_KEYS), line_of(raw, key)))
            continue
        field, check = HEALTH_KEYS[key]
        try:
            values[field] = check(value)
        except Invalid as exc:
            issues.append(Issue(f"{where}.{key}", str(exc), line_of(raw, key)))
    check = HealthCheck(**values)
    if not issues and check.timeout > check.interval:
        issues.append(Issue(f"{where}.timeout", f"must not be longer than interval ({check.interval:g}s)", line))
    return (None if issues else check), issues
