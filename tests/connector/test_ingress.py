import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from connector.ingress import (
    HelloWorldService,
    HttpService,
    Ingress,
    StatusService,
    TcpService,
    UnixService,
)
from shared.config import load_connector_config
from shared.errors import ConfigError

DATA = Path(__file__).parent.parent / "data" / "config"
VALID = sorted((DATA / "valid").glob("*.yml"))
INVALID = sorted((DATA / "invalid").glob("*.yml"))


def ingress_from_file(path: Path) -> Ingress:
    cfg = load_connector_config(path)
    return Ingress.from_rules(cfg.ingress, cfg.origin_request, source="config.yml")


def build(*rules: dict) -> Ingress:
    return Ingress.from_rules(list(rules))


RULES = build(
    {"hostname": "app.example.com", "service": "http://localhost:8000"},
    {"hostname": "*.example.com", "path": "/api", "service": "http://localhost:8001"},
    {"hostname": "*.dev.example.com", "service": "http://localhost:8002"},
    {"hostname": "*.example.com", "service": "http://localhost:8003"},
    {"hostname": "*", "path": r"\.png$", "service": "http://localhost:8004"},
    {"service": "http_status:404"},
)

MATCHES = [
    ("exact", "app.example.com", "/", 1),
    ("exact-case-insensitive", "APP.Example.COM", "/", 1),
    ("port-stripped", "app.example.com:8443", "/", 1),
    ("trailing-dot", "app.example.com.", "/", 1),
    ("first-match-wins-over-wildcard", "app.example.com", "/api", 1),
    ("path-unanchored", "x.example.com", "/v1/api/users", 2),
    ("path-query-ignored", "x.example.com", "/v1?q=/api", 4),
    ("path-percent-decoded", "x.example.com", "/%61pi", 2),
    ("wildcard-one-level", "x.example.com", "/", 4),
    ("wildcard-any-depth", "a.b.c.example.com", "/", 4),
    ("first-match-wins-deeper-wildcard-later", "x.dev.example.com", "/", 3),
    ("wildcard-not-apex", "example.com", "/", 6),
    ("wildcard-not-suffix-without-dot", "badexample.com", "/", 6),
    ("star-host-with-path", "other.test", "/logo.png", 5),
    ("fallthrough", "other.test", "/", 6),
    ("ipv6-host-fallthrough", "[::1]:8080", "/", 6),
]


@pytest.mark.parametrize(("host", "path", "index"), [m[1:] for m in MATCHES], ids=[m[0] for m in MATCHES])
def test_match(host, path, index):
    assert RULES.match(host, path).index == index


SERVICES = [
    ("http-default-port", "http://localhost", HttpService("http", "localhost", 80)),
    ("https-default-port", "https://example.org", HttpService("https", "example.org", 443)),
    ("http-port-slash", "http://127.0.0.1:8000/", HttpService("http", "127.0.0.1", 8000)),
    ("ws-is-http", "ws://localhost:9000", HttpService("http", "localhost", 9000)),
    ("wss-is-https", "wss://localhost", HttpService("https", "localhost", 443)),
    ("ipv6", "http://[::1]:8000", HttpService("http", "::1", 8000)),
    ("ssh", "ssh://localhost", TcpService("ssh", "localhost", 22)),
    ("rdp", "rdp://10.0.0.5", TcpService("rdp", "10.0.0.5", 3389)),
    ("smb", "smb://files", TcpService("smb", "files", 445)),
    ("tcp", "tcp://db", TcpService("tcp", "db", 7864)),
    ("unknown-scheme-is-tcp", "h2c://localhost:8080", TcpService("h2c", "localhost", 8080)),
    ("unix", "unix:/run/app.sock", UnixService("/run/app.sock", tls=False)),
    ("unix-tls", "unix+tls:/run/app.sock", UnixService("/run/app.sock", tls=True)),
    ("status", "http_status:418", StatusService(418)),
    ("hello-world", "hello_world", HelloWorldService()),
    ("hello-world-dash", "hello-world", HelloWorldService()),
]


@pytest.mark.parametrize(("text", "service"), [s[1:] for s in SERVICES], ids=[s[0] for s in SERVICES])
def test_service(text, service):
    assert build({"service": text}).rules[0].service == service


INVALID_RULES = [
    ("no-catch-all", [{"hostname": "a.example.com", "service": "http://x"}], "rule 1: the last rule must match"),
    ("last-has-path", [{"path": "^/", "service": "http://x"}], "rule 1: the last rule must match"),
    (
        "catch-all-not-last",
        [{"service": "http://x"}, {"service": "http_status:404"}],
        "rule 1 is a catch-all, so the rules after it would never match",
    ),
    (
        "star-catch-all-not-last",
        [{"hostname": "*", "service": "http://x"}, {"service": "http_status:404"}],
        "rule 1 is a catch-all",
    ),
    ("wildcard-middle", [{"hostname": "a.*.example.com", "service": "http://x"}, {"service": "http_status:404"}], "wildcard"),
    ("wildcard-no-dot", [{"hostname": "*example.com", "service": "http://x"}, {"service": "http_status:404"}], "wildcard"),
    ("wildcard-alone-dot", [{"hostname": "*.", "service": "http://x"}, {"service": "http_status:404"}], "wildcard"),
    ("port-in-hostname", [{"hostname": "a.example.com:80", "service": "http://x"}, {"service": "http_status:404"}], "rule 1: hostname: 'a.example.com:80' contains a port"),
    ("path-on-service", [{"service": "http://localhost:8000/app"}], "ingress rules don't support proxying to a different path"),
    ("query-on-service", [{"service": "http://localhost:8000?x=1"}], "ingress rules don't support proxying"),
    ("no-scheme", [{"service": "localhost:8000"}], "please make sure it has a scheme and a hostname"),
    ("bad-port", [{"service": "http://localhost:99999"}], "invalid address"),
    ("unknown-scheme-no-port", [{"service": "h2c://localhost"}], "needs a port"),
    ("bad-regex", [{"hostname": "a.example.com", "path": "(", "service": "http://x"}, {"service": "http_status:404"}], "rule 1: path: invalid regex"),
    ("status-too-big", [{"service": "http_status:1000"}], "rule 1: service: invalid HTTP status code '1000'"),
    ("status-too-small", [{"service": "http_status:99"}], "invalid HTTP status code '99'"),
    ("status-not-number", [{"service": "http_status:abc"}], "invalid HTTP status code 'abc'"),
    ("missing-service", [{"hostname": "a.example.com"}, {"service": "http_status:404"}], "rule 1: service: missing"),
    ("empty-unix", [{"service": "unix:"}], "needs a socket path"),
    ("bastion-unsupported", [{"service": "bastion"}], "not supported"),
    ("rule-not-mapping", ["http://x"], "rule 1: must be a mapping"),
    ("unknown-key", [{"service": "http://x", "servce": "y"}], "rule 1: servce: unknown key"),
    ("origin-request-not-mapping", [{"service": "http://x", "originRequest": "no"}], "originRequest: must be a mapping"),
    ("hostname-not-string", [{"hostname": 5, "service": "http://x"}, {"service": "http_status:404"}], "rule 1: hostname: must be a string"),
    ("empty", [], "no ingress rules"),
]


@pytest.mark.parametrize(("rules", "message"), [r[1:] for r in INVALID_RULES], ids=[r[0] for r in INVALID_RULES])
def test_invalid_rules(rules, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Ingress.from_rules(rules)


def test_origin_request_merged_per_key():
    ingress = Ingress.from_rules(
        [
            {"hostname": "a.example.com", "service": "https://x", "originRequest": {"noTLSVerify": True}},
            {"service": "http_status:404"},
        ],
        {"noTLSVerify": False, "connectTimeout": "10s"},
    )
    assert ingress.rules[0].origin_request == {"noTLSVerify": True, "connectTimeout": "10s"}
    assert ingress.rules[1].origin_request == {"noTLSVerify": False, "connectTimeout": "10s"}


def test_unicode_hostname_matches_punycode():
    ingress = build({"hostname": "*.bücher.example", "service": "http://x"}, {"service": "http_status:404"})
    assert ingress.match("www.xn--bcher-kva.example", "/").index == 1


def test_fixture_tables_are_not_empty():
    assert VALID and INVALID


def _expectations(path: Path) -> list[tuple[str, int]]:
    found = re.findall(r"^# expect: (\S+) -> (\d+)$", path.read_text(), re.MULTILINE)
    return [(url, int(index)) for url, index in found]


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_file(path):
    ingress = ingress_from_file(path)
    expectations = _expectations(path)
    assert expectations, f"{path.name} has no '# expect:' lines"
    for url, index in expectations:
        parts = urlsplit(url)
        assert ingress.match(parts.netloc, parts.path).index == index, url


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_file(path):
    expected = re.match(r"# error: (.+)", path.read_text()).group(1)
    with pytest.raises(ConfigError) as info:
        ingress_from_file(path)
    assert str(info.value).startswith(expected)
