"""Ingress rules, validated and matched exactly as cloudflared does.

Pure: raw rules from `config.yml` → an immutable `Ingress`; `match(host, path)`
picks the first rule whose hostname and path match, else the last rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from urllib.parse import unquote

from connector.ingress import origin_request, pools, ports
from connector.ingress.edits import Edits
from connector.ingress.origin_request import OriginRequest
from connector.ingress.pools import Pool
from connector.ingress.ports import PortRoute
from connector.ingress.services import PoolService, RuleError, Service, parse_service
from shared.errors import ConfigError
from shared.yaml_lines import line_of, type_name, where

RULE_KEYS = frozenset({"hostname", "path", "service", "originRequest"})


@dataclass(frozen=True)
class Rule:
    """One validated rule. `hostname` None matches every host; `index` is 1-based, as users see it;
    `edits`: its rewrites and header edits, None without any."""

    hostname: str | None
    path: re.Pattern | None
    service: Service
    origin_request: OriginRequest = OriginRequest()
    index: int = 0
    edits: Edits | None = None

    def matches(self, host: str, path: str) -> bool:
        """`host` must already be normalized and `path` decoded (see `Ingress.match`)."""
        return self._host_matches(host) and (self.path is None or self.path.search(path) is not None)

    def _host_matches(self, host: str) -> bool:
        if self.hostname is None or host == self.hostname:
            return True
        return self.hostname.startswith("*.") and host.endswith(self.hostname[1:])

    def explain(self, host: str, path: str) -> str:
        """Why this rule takes a request, in words (for `ingress rule`)."""
        host, path = normalize_host(host), normalize_path(path)
        if self.hostname is None and self.path is None:
            return "catch-all (no hostname, no path): no earlier rule matched"
        if self.hostname is None:
            reason = "any hostname"
        elif self.hostname == host:
            reason = f"hostname {self.hostname} equals {host}"
        else:
            reason = f"hostname {self.hostname} matches {host}"
        if self.path is None:
            return f"{reason}; no path"
        return f"{reason}; path {self.path.pattern} matches {path}"


class IngressError(ConfigError):
    """Every problem found in the ingress rules, one line each."""

    def __init__(self, problems: list[str], warnings: list[str]) -> None:
        self.problems = problems
        self.warnings = warnings
        if len(problems) == 1:
            super().__init__(problems[0])
        else:
            super().__init__(f"{len(problems)} problems in the ingress rules:\n  " + "\n  ".join(problems))


def _parse_hostname(raw: object) -> str | None:
    if raw is None or raw in ("", "*"):
        return None
    if not isinstance(raw, str):
        raise RuleError("hostname", f"must be a string, not {type_name(raw)}")
    name = raw.strip().lower().rstrip(".")
    if ":" in name:
        raise RuleError("hostname", f"{raw!r} contains a port; ingress hostnames can't have ports")
    wildcard = name.startswith("*.")
    base = name[2:] if wildcard else name
    if "*" in base or not base:
        raise RuleError(
            "hostname",
            f'{raw!r}: a wildcard ("*") is allowed only as the whole first label, e.g. "*.example.com"',
        )
    try:
        base = _punycode(base)
    except UnicodeError:
        raise RuleError("hostname", f"{raw!r} is not a valid hostname") from None
    return "*." + base if wildcard else base


def _parse_path(raw: object) -> re.Pattern | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise RuleError("path", f"must be a string (a regular expression), not {type_name(raw)}")
    try:
        return re.compile(raw)
    except re.error as exc:
        raise RuleError("path", f"invalid regex {raw!r}: {exc}") from None


class _Report:
    """Problems, warnings and unreadable files of one config, each a line naming file, line, rule and field."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.files: list[str] = []

    def add(
        self, line: int | None, rule: int | None, field_name: str | None, message: str, warning=False, file=False
    ) -> None:
        text = where(self.source, line) + ": "
        text += f"ingress rule {rule}: " if rule else ""
        text += f"{field_name}: " if field_name else ""
        (self.files if file else self.warnings if warning else self.problems).append(text + message)

    def origin_request(self, raw: object, line: int | None, rule: int | None) -> dict:
        values, issues = origin_request.parse(raw, line)
        for issue in issues:
            name = f"originRequest.{issue.path}" if issue.path else "originRequest"
            self.add(issue.line, rule, name, issue.message, issue.warning, issue.file)
        return values

    def pools(self, raw: object) -> dict[str, Pool]:
        found, issues = pools.parse(raw, line_of(raw))
        for issue in issues:
            self.add(issue.line, None, f"pools.{issue.path}" if issue.path else "pools", issue.message)
        return found

    def ports(self, protocol: str, raw: object, defaults: dict) -> dict[int, PortRoute]:
        found, issues = ports.parse(protocol, raw, line_of(raw), defaults)
        for issue in issues:
            self.add(issue.line, None, f"{protocol}{issue.path}", issue.message, issue.warning, issue.file)
        return found


def _parse_rule(
    raw: object, index: int, count: int, defaults: dict, report: _Report, pool_names: frozenset[str]
) -> Rule | None:
    """The rule, or None after adding its every problem to `report`."""
    if not isinstance(raw, Mapping):
        report.add(None, index, None, "must be a mapping with hostname, path, service and originRequest")
        return None
    before = len(report.problems)

    def check(parse, key):
        try:
            return parse(raw.get(key))
        except RuleError as exc:
            report.add(line_of(raw, exc.key), index, exc.key, str(exc))
            return None

    for key in raw:
        if key not in RULE_KEYS:
            report.add(line_of(raw, key), index, str(key), origin_request.unknown_key(key, RULE_KEYS))
    hostname = check(_parse_hostname, "hostname")
    path = check(_parse_path, "path")
    service = check(parse_service, "service")
    if isinstance(service, PoolService) and service.name not in pool_names:
        defined = ", ".join(sorted(pool_names)) or "none"
        message = f"pool {service.name!r} is not defined under pools: (defined: {defined})"
        report.add(line_of(raw, "service"), index, "service", message)
    catch_all = raw.get("hostname") in (None, "", "*") and raw.get("path") in (None, "")
    if index == count and not catch_all:
        report.add(
            line_of(raw), index, None,
            "the last rule must match every request: leave out hostname (or use \"*\") and path, "
            "e.g. service: http_status:404",
        )
    if index != count and catch_all:
        report.add(line_of(raw), index, None, f"rule {index} is a catch-all, so the rules after it would never match")
    overrides = {}
    if "originRequest" in raw:
        overrides = report.origin_request(raw["originRequest"], line_of(raw, "originRequest"), index)
    if len(report.problems) > before:
        return None
    options = origin_request.merged(defaults, overrides)
    return Rule(hostname, path, service, options, index, Edits.of(options))


@dataclass(frozen=True)
class Ingress:
    """Validated ingress rules; the last one is the catch-all. `warnings` name keys that are ignored;
    `file_problems` files the rules name that cannot be read (see `require_files`); `pools` the
    config's `pools:` by name; `tcp` and `udp` the public ports' routes by port."""

    rules: tuple[Rule, ...]
    warnings: tuple[str, ...] = ()
    file_problems: tuple[str, ...] = ()
    pools: Mapping[str, Pool] = field(default_factory=dict)
    tcp: Mapping[int, PortRoute] = field(default_factory=dict)
    udp: Mapping[int, PortRoute] = field(default_factory=dict)

    @classmethod
    def from_rules(
        cls,
        raw_rules: Sequence,
        default_origin_request: object = None,
        source: str = "config.yml",
        raw_pools: object = None,
        raw_tcp: object = None,
        raw_udp: object = None,
    ) -> Ingress:
        """Validate every rule (cloudflared's rules), pool and port route, or raise IngressError listing
        every problem with its file, line, rule number and field. Files that cannot be read do not raise here."""
        report = _Report(source)
        defaults = {}
        if default_origin_request is not None:
            defaults = report.origin_request(default_origin_request, line_of(default_origin_request), None)
        found = report.pools(raw_pools) if raw_pools is not None else {}
        tcp = report.ports("tcp", raw_tcp, defaults) if raw_tcp is not None else {}
        udp = report.ports("udp", raw_udp, defaults) if raw_udp is not None else {}
        names = frozenset(map(str, raw_pools)) if isinstance(raw_pools, Mapping) else frozenset()
        if not raw_rules:
            report.add(None, None, None, "no ingress rules")
        rules = [
            _parse_rule(raw, index, len(raw_rules), defaults, report, names) for index, raw in enumerate(raw_rules, 1)
        ]
        if report.problems:
            raise IngressError(report.problems, report.warnings + report.files)
        used = _used_pools(found, rules, raw_pools, report)
        return cls(tuple(rules), tuple(report.warnings), tuple(report.files), used, tcp, udp)

    def require_files(self) -> Ingress:
        """These rules if every file they name was read, else IngressError naming each one:
        what serving them needs (checking them offline only warns)."""
        if self.file_problems:
            raise IngressError(list(self.file_problems), list(self.warnings))
        return self

    def match(self, host: str, path: str) -> Rule:
        """The first rule matching `host` (any :port dropped) and `path` (query dropped, %-escapes
        decoded as Go's URL.Path is); the last rule when none does."""
        host, path = normalize_host(host), normalize_path(path)
        for rule in self.rules:
            if rule.matches(host, path):
                return rule
        return self.rules[-1]


def _used_pools(found: dict[str, Pool], rules: list[Rule], raw: object, report: _Report) -> dict[str, Pool]:
    """The pools rules use, each with the `originRequest` of the first of them; a warning for the others."""
    used = {}
    for rule in rules:
        if isinstance(rule.service, PoolService) and rule.service.name not in used:
            used[rule.service.name] = replace(found[rule.service.name], options=rule.origin_request)
    for name in found.keys() - used.keys():
        report.add(line_of(raw, name), None, f"pools.{name}", f"no rule uses it (service: pool:{name})", warning=True)
    return used


@lru_cache(maxsize=1024)  # per request, and the same few hosts again and again
def normalize_host(host: str) -> str:
    """A request's Host as rules compare it: lower case, no port, no final dot, IDN as punycode."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    try:
        return _punycode(host)
    except UnicodeError:
        return host


def normalize_path(path: str) -> str:
    """The path as rules see it: no query, %-escapes decoded."""
    path = path.split("?", 1)[0]
    return unquote(path) if "%" in path else path


def _punycode(name: str) -> str:
    """`name` with each non-ASCII label in its IDNA (xn--) form."""
    return name if name.isascii() else name.encode("idna").decode("ascii")
