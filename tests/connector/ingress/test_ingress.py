import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from connector.ingress import origin_request
from connector.ingress.origin_request import Access, OriginRequest
from connector.ingress.rules import Ingress, IngressError
from connector.ingress.services import (
    KNOWN_SERVICES,
    HelloWorldService,
    HttpService,
    StatusService,
    TcpService,
    UnixService,
)
from shared.config import load_connector_config
from shared.errors import ConfigError

DATA = Path(__file__).parents[2] / "data" / "config"
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
    {"hostname": "static.example.org", "path": "^/api(/|$)", "service": "http://localhost:8005"},
    {"hostname": "static.example.org", "service": "http://localhost:8006"},
    {"hostname": "bücher.example", "service": "http://localhost:8007"},
    {"hostname": "*.xn--mnchen-3ya.example", "service": "http://localhost:8008"},
    {"hostname": "Mixed.Case.Example", "service": "http://localhost:8009"},
    {"service": "http_status:404"},
)

MATCHES = [
    ("exact", "app.example.com", "/", 1),
    ("exact-case-insensitive", "APP.Example.COM", "/", 1),
    ("rule-hostname-case-insensitive", "mixed.case.example", "/", 10),
    ("port-stripped", "app.example.com:8443", "/", 1),
    ("port-stripped-wildcard", "x.example.com:443", "/", 4),
    ("trailing-dot", "app.example.com.", "/", 1),
    ("first-match-wins-over-wildcard", "app.example.com", "/api", 1),
    ("path-unanchored", "x.example.com", "/v1/api/users", 2),
    ("path-unanchored-prefix", "x.example.com", "/api", 2),
    ("path-unanchored-inside-word", "x.example.com", "/x/apidocs", 2),
    ("path-query-ignored", "x.example.com", "/v1?q=/api", 4),
    ("path-percent-decoded", "x.example.com", "/%61pi", 2),
    ("path-case-sensitive", "x.example.com", "/API", 4),
    ("anchored-path-exact", "static.example.org", "/api", 6),
    ("anchored-path-subpath", "static.example.org", "/api/v1", 6),
    ("anchored-path-not-prefix-word", "static.example.org", "/apiary", 7),
    ("anchored-path-not-nested", "static.example.org", "/v1/api/x", 7),
    ("wildcard-one-level", "x.example.com", "/", 4),
    ("wildcard-any-depth", "a.b.c.example.com", "/", 4),
    ("first-match-wins-deeper-wildcard-later", "x.dev.example.com", "/", 3),
    ("wildcard-matches-label-of-later-apex", "dev.example.com", "/", 4),
    ("wildcard-not-apex", "example.com", "/", 11),
    ("wildcard-not-suffix-without-dot", "badexample.com", "/", 11),
    ("wildcard-not-other-zone", "x.example.com.evil.test", "/", 11),
    ("star-host-with-path", "other.test", "/logo.png", 5),
    ("star-host-path-anchored-at-end", "other.test", "/logo.png.txt", 11),
    ("order-star-path-before-exact", "static.example.org", "/logo.png", 5),
    ("idn-unicode-rule-unicode-request", "bücher.example", "/", 8),
    ("idn-unicode-rule-punycode-request", "xn--bcher-kva.example", "/", 8),
    ("idn-unicode-rule-upper-unicode-request", "BÜCHER.example", "/", 8),
    ("idn-punycode-wildcard-unicode-request", "www.münchen.example", "/", 9),
    ("idn-punycode-wildcard-punycode-request", "a.b.xn--mnchen-3ya.example", "/", 9),
    ("idn-wildcard-not-apex", "münchen.example", "/", 11),
    ("fallthrough", "other.test", "/", 11),
    ("empty-host", "", "/", 11),
    ("ipv4-host", "127.0.0.1:8080", "/", 11),
    ("ipv6-host-fallthrough", "[::1]:8080", "/", 11),
]


def test_match_table_is_big_enough():
    assert len(MATCHES) >= 30


@pytest.mark.parametrize(("host", "path", "index"), [m[1:] for m in MATCHES], ids=[m[0] for m in MATCHES])
def test_match(host, path, index):
    assert RULES.match(host, path).index == index


EXPLANATIONS = [
    ("exact", "app.example.com", "/", "hostname app.example.com equals app.example.com; no path"),
    ("wildcard", "a.example.com", "/", "hostname *.example.com matches a.example.com; no path"),
    ("wildcard-path", "a.example.com", "/v1/api", "hostname *.example.com matches a.example.com; path /api matches /v1/api"),
    ("any-host-path", "x.test", "/a.png", "any hostname; path \\.png$ matches /a.png"),
    ("catch-all", "x.test", "/", "catch-all (no hostname, no path): no earlier rule matched"),
]


@pytest.mark.parametrize(("host", "path", "why"), [e[1:] for e in EXPLANATIONS], ids=[e[0] for e in EXPLANATIONS])
def test_explain(host, path, why):
    assert RULES.match(host, path).explain(host, path) == why


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
    ("unknown-scheme", [{"service": "h2c://localhost:8080"}], "rule 1: service: 'h2c://localhost:8080' has an unknown scheme 'h2c'"),
    ("unknown-scheme-ftp", [{"service": "ftp://files"}], "unknown scheme 'ftp'"),
    ("bad-regex", [{"hostname": "a.example.com", "path": "(", "service": "http://x"}, {"service": "http_status:404"}], "rule 1: path: invalid regex"),
    ("status-too-big", [{"service": "http_status:1000"}], "rule 1: service: invalid HTTP status code '1000'"),
    ("status-too-small", [{"service": "http_status:99"}], "invalid HTTP status code '99'"),
    ("status-not-number", [{"service": "http_status:abc"}], "invalid HTTP status code 'abc'"),
    ("missing-service", [{"hostname": "a.example.com"}, {"service": "http_status:404"}], "rule 1: service: missing"),
    ("empty-unix", [{"service": "unix:"}], "needs a socket path"),
    ("bastion-unsupported", [{"service": "bastion"}], "not supported"),
    ("rule-not-mapping", ["http://x"], "rule 1: must be a mapping"),
    ("unknown-key", [{"service": "http://x", "servce": "y"}], "rule 1: servce: unknown key (did you mean 'service'?)"),
    ("unknown-key-far", [{"service": "http://x", "zzz": "y"}], "rule 1: zzz: unknown key (known: hostname, originRequest, path, service)"),
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
    assert ingress.rules[0].origin_request == OriginRequest(no_tls_verify=True, connect_timeout=10.0)
    assert ingress.rules[1].origin_request == OriginRequest(no_tls_verify=False, connect_timeout=10.0)


def test_origin_request_defaults_are_cloudflareds():
    options = build({"service": "http://x"}).rules[0].origin_request
    assert (options.connect_timeout, options.tls_timeout, options.tcp_keep_alive) == (30.0, 10.0, 30.0)
    assert (options.keep_alive_connections, options.keep_alive_timeout) == (100, 90.0)
    assert not (options.no_tls_verify or options.match_sni_to_host or options.disable_chunked_encoding)


def test_origin_request_every_key(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    raw = {
        "connectTimeout": "1m30s", "tlsTimeout": "500ms", "tcpKeepAlive": "15s", "noHappyEyeballs": True,
        "keepAliveConnections": 4, "keepAliveTimeout": "1h", "httpHostHeader": "internal.test",
        "originServerName": "origin.test", "matchSNItoHost": True, "caPool": str(ca), "noTLSVerify": True,
        "disableChunkedEncoding": True, "http2Origin": False,
        "access": {"required": False, "teamName": "team", "audTag": ["aud1"], "environment": "fedramp"},
    }
    options = build({"service": "https://x", "originRequest": raw}).rules[0].origin_request
    assert options == OriginRequest(
        connect_timeout=90.0, tls_timeout=0.5, tcp_keep_alive=15.0, no_happy_eyeballs=True,
        keep_alive_connections=4, keep_alive_timeout=3600.0, http_host_header="internal.test",
        origin_server_name="origin.test", match_sni_to_host=True, ca_pool=str(ca), ca_pem=ca.read_text(),
        no_tls_verify=True, disable_chunked_encoding=True, http2_origin=False,
        access=Access(False, "team", ("aud1",), "fedramp"),
    )


BAD_ORIGIN_REQUESTS = [
    ("duration-no-unit", {"connectTimeout": 30}, "originRequest.connectTimeout: duration 30 needs a unit, e.g. 30s"),
    ("duration-string-no-unit", {"tlsTimeout": "10"}, "originRequest.tlsTimeout: duration '10' needs a unit"),
    ("duration-bad-unit", {"keepAliveTimeout": "10x"}, "originRequest.keepAliveTimeout: invalid duration '10x'"),
    ("duration-negative", {"tcpKeepAlive": "-5s"}, "originRequest.tcpKeepAlive: invalid duration '-5s'"),
    ("duration-bool", {"connectTimeout": True}, "originRequest.connectTimeout: must be a duration like 30s, not bool"),
    ("bool-as-string", {"noTLSVerify": "yes"}, "originRequest.noTLSVerify: must be true or false, not str 'yes'"),
    ("bool-as-int", {"matchSNItoHost": 1}, "originRequest.matchSNItoHost: must be true or false"),
    ("count-negative", {"keepAliveConnections": -1}, "originRequest.keepAliveConnections: must be a whole number"),
    ("count-string", {"keepAliveConnections": "10"}, "originRequest.keepAliveConnections: must be a whole number"),
    ("string-as-list", {"httpHostHeader": ["a"]}, "originRequest.httpHostHeader: must be a string, not list"),
    ("unknown-key", {"connectTimout": "1s"}, "originRequest.connectTimout: unknown key (did you mean 'connectTimeout'?)"),
    ("not-mapping", "fast", "originRequest: must be a mapping of keys, not str"),
    ("access-not-mapping", {"access": True}, "originRequest.access: must be a mapping"),
    ("access-unknown-key", {"access": {"team": "x"}}, "originRequest.access.team: unknown key (did you mean 'teamName'?)"),
    ("access-aud-not-list", {"access": {"audTag": "x"}}, "originRequest.access.audTag: must be a list"),
    ("access-team-bad", {"access": {"required": True, "teamName": "a b"}}, "originRequest.access.teamName: must be the edge's HTTPS HOST[:PORT]"),
    ("proxy-port-range", {"proxyPort": 70000}, "originRequest.proxyPort: must be a port number"),
    ("proxy-protocol-value", {"proxyProtocol": "v3"}, "originRequest.proxyProtocol: must be v1 or v2, not 'v3'"),
    ("proxy-protocol-bool", {"proxyProtocol": True}, "originRequest.proxyProtocol: must be v1 or v2, not True"),
    ("client-cert-alone", {"clientCertificate": "/c.pem"}, "originRequest.clientCertificate: needs clientKey too"),
    ("client-key-alone", {"clientKey": "/c.key"}, "originRequest.clientKey: needs clientCertificate too"),
    ("strip-relative", {"stripPathPrefix": "api"}, "originRequest.stripPathPrefix: must be a path such as /api"),
    ("strip-query", {"stripPathPrefix": "/api?x"}, "originRequest.stripPathPrefix: must be a path such as /api"),
    ("set-not-mapping", {"setResponseHeaders": ["X-A"]}, "originRequest.setResponseHeaders: must be a mapping of header name → value, not list"),
    ("set-value-list", {"setRequestHeaders": {"X-A": [1]}}, "originRequest.setRequestHeaders: the value of 'X-A' must be a string, not list"),
    ("remove-not-list", {"removeRequestHeaders": "Cookie"}, "originRequest.removeRequestHeaders: must be a list, not str"),
    ("remove-connection", {"removeRequestHeaders": ["Connection"]}, "originRequest.removeRequestHeaders: 'Connection' cannot be edited"),
    ("set-content-length", {"setResponseHeaders": {"Content-Length": 1}}, "originRequest.setResponseHeaders: 'Content-Length' cannot be edited"),
]


@pytest.mark.parametrize(("raw", "message"), [b[1:] for b in BAD_ORIGIN_REQUESTS], ids=[b[0] for b in BAD_ORIGIN_REQUESTS])
def test_bad_origin_request_in_a_rule(raw, message):
    with pytest.raises(ConfigError, match=re.escape(f"ingress rule 1: {message}")):
        build({"service": "http://x", "originRequest": raw})


UNREADABLE_CA = [("missing", None, "no such file"), ("not-pem", "hello\n", "holds no PEM certificate")]


@pytest.mark.parametrize(("content", "reason"), [u[1:] for u in UNREADABLE_CA], ids=[u[0] for u in UNREADABLE_CA])
def test_an_unreadable_ca_pool_matters_only_to_serving(tmp_path, content, reason):
    """As cloudflared, which reads caPool when the origin is first used: the rules still load and match."""
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    ingress = build(
        {"hostname": "a.test", "service": "https://x", "originRequest": {"caPool": str(ca)}},
        {"service": "http_status:404"},
    )
    expected = f"config.yml: ingress rule 1: originRequest.caPool: {ca}"
    (problem,) = ingress.file_problems
    assert problem.startswith(expected) and problem.endswith(reason) and ingress.warnings == ()
    assert ingress.match("a.test", "/").index == 1
    with pytest.raises(IngressError) as info:
        ingress.require_files()
    assert str(info.value) == problem


def _client_pair(tmp_path: Path, problem: str) -> dict:
    """clientCertificate and clientKey files with `problem` (or none: "")."""
    ca = trustme.CA()
    leaf, other = ca.issue_cert("burrow"), ca.issue_cert("other")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    key = {"": leaf, "mismatch": other}.get(problem, leaf).private_key_pem.bytes()
    if problem == "encrypted":
        private = serialization.load_pem_private_key(key, None)
        key = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
        )
    (tmp_path / "c.key").write_bytes(b"no key\n" if problem == "not-pem" else key)
    return {"clientCertificate": str(tmp_path / "c.pem"), "clientKey": str(tmp_path / "c.key")}


CLIENT_PAIRS = [
    ("mismatch", "is not the key of clientCertificate"),
    ("encrypted", "is encrypted: Burrow needs the key unencrypted"),
    ("not-pem", "holds no PEM private key"),
]


@pytest.mark.parametrize(("problem", "reason"), CLIENT_PAIRS, ids=[c[0] for c in CLIENT_PAIRS])
def test_a_bad_client_key_matters_only_to_serving(tmp_path, problem, reason):
    ingress = build({"service": "https://x", "originRequest": _client_pair(tmp_path, problem)})
    (line,) = ingress.file_problems
    assert line.startswith("config.yml: ingress rule 1: originRequest.clientKey: ") and reason in line


def test_a_client_pair_is_read_at_load(tmp_path):
    options = build({"service": "https://x", "originRequest": _client_pair(tmp_path, "")}).require_files()
    request = options.rules[0].origin_request
    assert request.client_certificate == str(tmp_path / "c.pem") and len(request.client_digest) == 64
    assert "client_digest" not in repr(request)


def test_an_unreadable_top_level_ca_pool_has_no_rule_number():
    ingress = Ingress.from_rules([{"service": "http://x"}], {"caPool": "/nonexistent/ca.pem"})
    assert ingress.file_problems == ("config.yml: originRequest.caPool: /nonexistent/ca.pem: no such file",)


def test_an_unreadable_ca_pool_is_listed_with_the_warnings_of_an_invalid_config():
    with pytest.raises(IngressError) as info:
        build({"service": "http://x", "originRequest": {"caPool": "/nonexistent/ca.pem", "connectTimeout": 5}})
    assert info.value.problems == ["config.yml: ingress rule 1: originRequest.connectTimeout: duration 5 needs a unit, "
                                   "e.g. 5s (units: ns, us, ms, s, m, h)"]
    assert info.value.warnings == ["config.yml: ingress rule 1: originRequest.caPool: /nonexistent/ca.pem: no such file"]


def test_require_files_passes_readable_rules_through(tmp_path):
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    ingress = build({"service": "https://x", "originRequest": {"caPool": str(ca)}})
    assert ingress.require_files() is ingress


def test_bad_top_level_origin_request_has_no_rule_number():
    with pytest.raises(ConfigError) as info:
        Ingress.from_rules([{"service": "http://x"}], {"connectTimeout": "soon"})
    assert str(info.value) == "config.yml: originRequest.connectTimeout: invalid duration 'soon' (examples: 30s, 1m30s, 500ms)"


WARNED = [
    ("bastionMode", {"bastionMode": True}, "originRequest.bastionMode: is not supported by Burrow yet and is ignored"),
    ("proxyAddress", {"proxyAddress": "127.0.0.1"}, "originRequest.proxyAddress: is not supported by Burrow yet"),
    ("proxyPort", {"proxyPort": 1080}, "originRequest.proxyPort: is not supported by Burrow yet"),
    ("proxyType", {"proxyType": "socks"}, "originRequest.proxyType: is not supported by Burrow yet"),
    ("ipRules", {"ipRules": [{"prefix": "10.0.0.0/8", "allow": True}]}, "originRequest.ipRules: is not supported"),
]


def test_access_required_is_accepted_without_a_warning():
    ingress = build({"service": "http://x", "originRequest": {"access": {"required": True, "audTag": ["a"]}}})
    assert not ingress.warnings
    assert ingress.rules[0].origin_request.access.required and ingress.rules[0].origin_request.access.aud_tag == ("a",)


def test_http2_origin_is_accepted_without_a_warning():
    ingress = build({"service": "http://x", "originRequest": {"http2Origin": True}})
    assert not ingress.warnings
    assert ingress.rules[0].origin_request.http2_origin


@pytest.mark.parametrize(("raw", "warning"), [w[1:] for w in WARNED], ids=[w[0] for w in WARNED])
def test_keys_burrow_does_not_implement_are_warned(raw, warning):
    ingress = build({"service": "http://x", "originRequest": raw})
    assert len(ingress.warnings) == 1
    assert f"ingress rule 1: {warning}" in ingress.warnings[0]


def test_every_problem_is_reported_with_rule_field_and_line(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(
        "originRequest:\n"
        "  connectTimeout: 5\n"                 # line 2
        "ingress:\n"
        "  - hostname: a.*.example.com\n"        # line 4
        "    path: (\n"                          # line 5
        "    service: h2c://localhost:80\n"      # line 6
        "    originRequest:\n"
        "      noTLSVerify: maybe\n"             # line 8
        "      bastionMode: true\n"              # line 9
        "  - service: http://x\n"                # line 10
        "  - hostname: b.example.com\n"          # line 11
        "    service: http://localhost:8000/app\n"
    )
    cfg = load_connector_config(path)
    with pytest.raises(IngressError) as info:
        Ingress.from_rules(cfg.ingress, cfg.origin_request, source="config.yml")
    problems = info.value.problems
    assert problems == [
        "config.yml line 2: originRequest.connectTimeout: duration 5 needs a unit, e.g. 5s (units: ns, us, ms, s, m, h)",
        "config.yml line 4: ingress rule 1: hostname: 'a.*.example.com': a wildcard (\"*\") is allowed only as the "
        "whole first label, e.g. \"*.example.com\"",
        "config.yml line 5: ingress rule 1: path: invalid regex '(': missing ), unterminated subpattern at position 0",
        f"config.yml line 6: ingress rule 1: service: 'h2c://localhost:80' has an unknown scheme 'h2c' (known: {KNOWN_SERVICES})",
        "config.yml line 8: ingress rule 1: originRequest.noTLSVerify: must be true or false, not str 'maybe'",
        "config.yml line 10: ingress rule 2: rule 2 is a catch-all, so the rules after it would never match",
        "config.yml line 12: ingress rule 3: service: 'http://localhost:8000/app' is an invalid address, ingress "
        "rules don't support proxying to a different path on the origin service; the path will be the same as "
        "the eyeball request's path",
        "config.yml line 11: ingress rule 3: the last rule must match every request: leave out hostname "
        "(or use \"*\") and path, e.g. service: http_status:404",
    ]
    assert info.value.warnings == [
        "config.yml line 9: ingress rule 1: originRequest.bastionMode: is not supported by Burrow yet and is ignored"
    ]
    assert str(info.value).startswith("8 problems in the ingress rules:\n  config.yml line 2: ")


def test_fixture_tables_are_not_empty():
    assert VALID and INVALID


def _expectations(path: Path) -> list[tuple[str, int]]:
    found = re.findall(r"^# expect: (\S+) -> (\d+)$", path.read_text(), re.MULTILINE)
    return [(url, int(index)) for url, index in found]


@pytest.fixture
def home_with_ca(tmp_path, monkeypatch):
    """A HOME holding ~/.burrow/internal-ca.pem (a trustme CA) and a client certificate and key,
    which cloudflared-docs.yml names."""
    (tmp_path / ".burrow").mkdir()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / ".burrow" / "internal-ca.pem"))
    client = ca.issue_cert("burrow-connector")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / ".burrow" / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / ".burrow" / "client.key"))
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_file(path, home_with_ca):
    ingress = ingress_from_file(path)
    expectations = _expectations(path)
    assert expectations, f"{path.name} has no '# expect:' lines"
    for url, index in expectations:
        parts = urlsplit(url)
        assert ingress.match(parts.netloc, parts.path).index == index, url


def test_documentation_style_file_uses_every_key(home_with_ca):
    path = DATA / "valid" / "cloudflared-docs.yml"
    text = path.read_text()
    for key in origin_request.KEYS:
        assert f"{key}:" in text, key
    ingress = ingress_from_file(path)
    assert {w.split("originRequest.")[1].split(":")[0] for w in ingress.warnings} == {
        "bastionMode", "proxyAddress", "proxyPort", "proxyType", "ipRules"
    }
    api, shop, preview = ingress.rules[0], ingress.rules[3], ingress.rules[4]
    assert (api.origin_request.connect_timeout, api.origin_request.tls_timeout) == (2.0, 5.0)
    assert api.origin_request.disable_chunked_encoding and api.origin_request.keep_alive_connections == 16
    assert shop.origin_request.origin_server_name == "shop.internal" and "BEGIN CERTIFICATE" in shop.origin_request.ca_pem
    assert preview.origin_request.match_sni_to_host and preview.origin_request.http_host_header == "preview.internal"
    assert ingress.rules[0].origin_request.access.aud_tag == ("aud-1", "aud-2")
    assert not ingress.file_problems and shop.origin_request.client_digest


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_file(path):
    expected = re.findall(r"^# error: (.+)$", path.read_text(), re.MULTILINE)
    with pytest.raises(ConfigError) as info:
        ingress_from_file(path)
    problems = getattr(info.value, "problems", [str(info.value)])
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected):
        assert problem.startswith(start)


def test_configuration_docs_cover_every_origin_request_key():
    docs = (Path(__file__).parents[3] / "docs" / "configuration.md").read_text()
    for key, (name, _) in origin_request.KEYS.items():
        if name is None:
            assert f"`{key}`" in docs, key
        else:
            row = re.search(rf"^\| `{key}` \| (.+?) \| .+ \| (.+) \|$", docs, re.MULTILINE)
            assert row, f"no table row with default and example for {key}"
