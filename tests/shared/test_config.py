import json
import re
import stat
import textwrap
import uuid
from pathlib import Path

import pytest

from shared.config import load_connector_config
from shared.credentials import AccountCert, Credentials, load_account_cert, load_credentials, save_account_cert, save_credentials
from shared.edge_config import EdgeConfig, PortRange, load_edge_config, parse_port_range, write_edge_config
from shared.errors import ConfigError
from shared.values import Secret, burrow_home, parse_duration, parse_hostport
from shared.yaml_lines import line_of

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


DURATIONS = [
    ("seconds", "10s", 10.0),
    ("minutes-seconds", "1m30s", 90.0),
    ("millis", "500ms", 0.5),
    ("hours", "2h", 7200.0),
    ("fraction", "1.5s", 1.5),
    ("micros", "250us", 0.00025),
    ("bare-string", "30", 30.0),
    ("bare-int", 7, 7.0),
    ("zero", "0s", 0.0),
    ("spaces-around", " 5s ", 5.0),
]


@pytest.mark.parametrize(("text", "seconds"), [d[1:] for d in DURATIONS], ids=[d[0] for d in DURATIONS])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


BAD_DURATIONS = [("empty", ""), ("no-number", "s"), ("unknown-unit", "10x"), ("negative", "-1s"),
                 ("trailing-junk", "10s junk"), ("inner-space", "1m 30s"), ("bool", True), ("none", None), ("negative-int", -3)]


@pytest.mark.parametrize("text", [d[1] for d in BAD_DURATIONS], ids=[d[0] for d in BAD_DURATIONS])
def test_parse_duration_rejects(text):
    with pytest.raises(ConfigError, match="invalid duration"):
        parse_duration(text)


HOSTPORTS = [
    ("ipv4", "127.0.0.1:0", ("127.0.0.1", 0)),
    ("ipv6", "[::1]:443", ("::1", 443)),
    ("name", "edge.example.com:7844", ("edge.example.com", 7844)),
    ("all-addresses", ":53", ("", 53)),
]


@pytest.mark.parametrize(("text", "address"), [h[1:] for h in HOSTPORTS], ids=[h[0] for h in HOSTPORTS])
def test_parse_hostport(text, address):
    assert parse_hostport(text) == address


@pytest.mark.parametrize("text", ["127.0.0.1", "::1:443", "host:port", "host:70000", "[::1]", "", 443],
                         ids=["no-port", "bare-ipv6", "named-port", "port-range", "brackets-no-port", "empty", "int"])
def test_parse_hostport_rejects(text):
    with pytest.raises(ConfigError, match="invalid address"):
        parse_hostport(text)


def test_secret_is_masked():
    secret = Secret(b"hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    creds = Credentials("acct", str(uuid.uuid4()), "web", secret, "edge:7844")
    assert "hunter2" not in repr(creds)


def test_burrow_home(monkeypatch, tmp_path):
    monkeypatch.setenv("BURROW_HOME", str(tmp_path))
    assert burrow_home() == tmp_path
    monkeypatch.delenv("BURROW_HOME")
    assert burrow_home() == Path.home() / ".burrow"


def test_edge_config_roundtrip(tmp_path):
    cfg = EdgeConfig(("example.com",), ("203.0.113.10",), ("127.0.0.1", 0), ("::1", 7844), ("", 53), tmp_path)
    write_edge_config(cfg)
    assert load_edge_config(tmp_path) == cfg
    assert mode(tmp_path / "edge.yml") == 0o600
    assert cfg.registry_path == tmp_path / "registry.db"
    assert cfg.certs_dir == tmp_path / "certs"
    assert cfg.ca_path == tmp_path / "ca.pem"


def test_edge_config_dns_off_and_user_roundtrip(tmp_path):
    cfg = EdgeConfig(("example.com",), ("203.0.113.10",), ("", 443), ("", 7844), None, tmp_path, user="burrow-edge")
    write_edge_config(cfg)
    assert load_edge_config(tmp_path) == cfg
    (tmp_path / "edge.yml").write_text("zone: example.com\npublic-ip: ::1\ndns-listen: off\n")  # YAML's bare off is false
    assert load_edge_config(tmp_path).dns_listen is None


def test_edge_config_public_port_ranges_roundtrip(tmp_path):
    ranges = {"tcp_ports": PortRange(20000, 20099), "udp_ports": PortRange(5353, 5353)}
    cfg = EdgeConfig(("example.com",), ("203.0.113.10",), ("", 443), ("", 7844), ("", 53), tmp_path, **ranges)
    write_edge_config(cfg)
    assert "tcp-ports: 20000-20099\nudp-ports: 5353-5353\n" in (tmp_path / "edge.yml").read_text()
    assert load_edge_config(tmp_path) == cfg
    assert 20099 in cfg.tcp_ports and 20100 not in cfg.tcp_ports and parse_port_range(" 7 ") == PortRange(7, 7)


def test_edge_config_defaults_and_canonical_zone(tmp_path):
    (tmp_path / "edge.yml").write_text("zone: Example.COM.\npublic-ip: 203.0.113.10\n")
    cfg = load_edge_config(tmp_path)
    assert cfg.zone == "example.com"
    assert cfg.tunnel_listen == ("", 7844)


EDGE_ERRORS = [
    ("bad-zone", "zone: exa_mple..com\npublic-ip: 203.0.113.10\n", "edge.yml line 1: zone: invalid zone"),
    ("bad-ip", "zone: example.com\npublic-ip: 203.0.113.300\n", "edge.yml line 2: public-ip: invalid public-ip"),
    ("bad-listen", "zone: example.com\npublic-ip: ::1\nhttps-listen: 443\n", "edge.yml line 3: https-listen: invalid address"),
    ("missing-zone", "public-ip: 203.0.113.10\n", "edge.yml: missing key 'zone'"),
    ("unknown-key", "zone: example.com\npublic-ip: ::1\nzones: x\n", "edge.yml line 3: unknown key 'zones'"),
    ("repeated-zone", "zone: [a.com, a.com]\npublic-ip: ::1\n", "edge.yml line 1: zone: a value is listed twice"),
    ("not-a-mapping", "- zone\n", "edge.yml: expected a mapping"),
    ("bad-dns-listen", "zone: example.com\npublic-ip: ::1\ndns-listen: on\n", "edge.yml line 3: dns-listen: invalid address True"),
    ("empty-user", "zone: example.com\npublic-ip: ::1\nuser: ''\n", "edge.yml line 3: user: expected a user name"),
    ("bad-tcp-ports", "zone: example.com\npublic-ip: ::1\ntcp-ports: 20-10\n", "edge.yml line 3: tcp-ports: invalid port range '20-10'"),
    ("udp-ports-words", "zone: example.com\npublic-ip: ::1\nudp-ports: all\n", "edge.yml line 3: udp-ports: invalid port range 'all': expected LO-HI"),
    ("tcp-ports-hold-https", "zone: example.com\npublic-ip: ::1\ntcp-ports: 400-500\n", "edge.yml: tcp-ports 400-500 holds port 443 of https-listen"),
    ("udp-ports-hold-dns", "zone: example.com\npublic-ip: ::1\nudp-ports: 53-53\n", "edge.yml: udp-ports 53-53 holds port 53 of dns-listen"),
]


@pytest.mark.parametrize(("text", "message"), [e[1:] for e in EDGE_ERRORS], ids=[e[0] for e in EDGE_ERRORS])
def test_edge_config_errors(tmp_path, text, message):
    (tmp_path / "edge.yml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_edge_config(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}/{message}")


def test_edge_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="edge.yml: no such file"):
        load_edge_config(tmp_path)


@pytest.mark.parametrize("edge_ca", [None, CA_PEM], ids=["system-ca", "pinned-ca"])
def test_credentials_roundtrip(tmp_path, edge_ca):
    path = tmp_path / "web" / "credentials.json"
    creds = Credentials("acct-1", str(uuid.uuid4()), "web", Secret(b"\x00\xffsecret"), "edge.example.com:7844", edge_ca)
    save_credentials(path, creds)
    assert load_credentials(path) == creds
    assert mode(path) == 0o600
    data = json.loads(path.read_text())
    assert set(data) >= {"AccountTag", "TunnelID", "TunnelName", "TunnelSecret", "Endpoint"}
    assert ("EdgeCA" in data) == (edge_ca is not None)


GOOD_CREDS = {"AccountTag": "a", "TunnelID": str(uuid.UUID(int=1)), "TunnelSecret": "c2VjcmV0", "Endpoint": "e:7844"}
CRED_ERRORS = [
    ("missing-secret", {k: v for k, v in GOOD_CREDS.items() if k != "TunnelSecret"}, "missing key 'TunnelSecret'"),
    ("bad-base64", {**GOOD_CREDS, "TunnelSecret": "not base64!"}, "TunnelSecret is not valid base64"),
    ("bad-uuid", {**GOOD_CREDS, "TunnelID": "nope"}, "TunnelID 'nope' is not a UUID"),
    ("bad-endpoint", {**GOOD_CREDS, "Endpoint": "e"}, "Endpoint: invalid address"),
    ("wrong-type", {**GOOD_CREDS, "AccountTag": 5}, "AccountTag must be a string"),
    ("not-object", [1], "expected a JSON object"),
]


@pytest.mark.parametrize(("data", "message"), [e[1:] for e in CRED_ERRORS], ids=[e[0] for e in CRED_ERRORS])
def test_credentials_errors(tmp_path, data, message):
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        load_credentials(path)


def test_credentials_bad_json_and_missing_file(tmp_path):
    path = tmp_path / "credentials.json"
    with pytest.raises(ConfigError, match="no such file"):
        load_credentials(path)
    path.write_text('{\n  "AccountTag": "a",\n}')
    with pytest.raises(ConfigError, match=re.escape(f"{path} line 3: invalid JSON")):
        load_credentials(path)


@pytest.mark.parametrize("edge_ca", [None, CA_PEM], ids=["system-ca", "private-ca"])
def test_account_cert_roundtrip(tmp_path, edge_ca):
    path = tmp_path / "cert.pem"
    cert = AccountCert("https://edge.example.com", "acct-1", Secret(b"brw_token"), edge_ca)
    save_account_cert(path, cert)
    assert load_account_cert(path) == cert
    assert mode(path) == 0o600
    text = path.read_text()
    assert "brw_token" not in text
    assert text.rstrip().endswith("-----END BURROW ACCOUNT TOKEN-----")
    assert text.startswith("-----BEGIN CERTIFICATE-----" if edge_ca else "-----BEGIN BURROW ACCOUNT TOKEN-----")


def test_account_cert_errors(tmp_path):
    path = tmp_path / "cert.pem"
    with pytest.raises(ConfigError, match=re.escape(f"not logged in: {path} is missing; run `burrow tunnel login`")):
        load_account_cert(path)
    path.write_text(CA_PEM)
    with pytest.raises(ConfigError, match="no -----BEGIN BURROW ACCOUNT TOKEN----- block"):
        load_account_cert(path)
    path.write_text("-----BEGIN BURROW ACCOUNT TOKEN-----\n!!\n-----END BURROW ACCOUNT TOKEN-----\n")
    with pytest.raises(ConfigError, match="damaged"):
        load_account_cert(path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_connector_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(tmp_path, """\
        tunnel: web
        credentials-file: ~/.burrow/web/credentials.json
        originRequest: {connectTimeout: 10s}
        ha-connections: 2
        proxy: socks5://198.18.0.1:1080
        protocol: http2
        no-autoupdate: true
        ingress:
          - hostname: app.example.com
            service: http://localhost:8000
          - service: http_status:404
        """)
    cfg = load_connector_config(path)
    assert cfg.tunnel == "web"
    assert cfg.credentials_file == tmp_path / ".burrow" / "web" / "credentials.json"
    assert cfg.origin_request == {"connectTimeout": "10s"}
    assert cfg.ha_connections == 2
    assert cfg.proxy == "socks5://198.18.0.1:1080"
    assert cfg.extra == {"protocol": "http2", "no-autoupdate": True}
    assert cfg.ingress == ({"hostname": "app.example.com", "service": "http://localhost:8000"}, {"service": "http_status:404"})
    assert [line_of(rule) for rule in cfg.ingress] == [9, 11]
    assert line_of(cfg.ingress[0], "service") == 10


def test_connector_config_empty_file(tmp_path):
    cfg = load_connector_config(write(tmp_path, ""))
    assert (cfg.tunnel, cfg.ingress, cfg.origin_request, cfg.extra) == (None, (), {}, {})


CONNECTOR_ERRORS = [
    ("yaml-syntax", "tunnel: web\ningress:\n  - service: x\n   hostname: y\n", "config.yml line 4: "),
    ("yaml-tab", "tunnel: web\n\tingress: []\n", "config.yml line 2: "),
    ("duplicate-key", "tunnel: a\ntunnel: b\n", "config.yml line 2: duplicate key 'tunnel'"),
    ("ingress-not-list", "tunnel: web\ningress: {service: x}\n", "config.yml line 2: ingress must be a list of rules, not mapping"),
    ("tunnel-not-string", "tunnel: [a]\n", "config.yml line 1: tunnel must be a tunnel name or UUID, not list"),
    ("ha-not-int", "ha-connections: many\n", "config.yml line 1: ha-connections must be a whole number from 1 to 16"),
    ("proxy-not-string", "proxy: {host: p}\n", "config.yml line 1: proxy must be a proxy URL like http://HOST:PORT or socks5://HOST:PORT, not mapping"),
    ("origin-request-not-mapping", "originRequest: 5\n", "config.yml line 1: originRequest must be a mapping, not int"),
    ("not-a-mapping", "just text\n", "config.yml: expected a mapping"),
]


@pytest.mark.parametrize(("text", "message"), [e[1:] for e in CONNECTOR_ERRORS], ids=[e[0] for e in CONNECTOR_ERRORS])
def test_connector_config_errors(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_connector_config(path)
    assert str(info.value).startswith(f"{tmp_path}/{message}")
    assert "\n" not in str(info.value)


def test_edge_config_with_several_zones_and_addresses(tmp_path):
    cfg = EdgeConfig(("a.com", "b.org"), ("203.0.113.10", "2001:db8::1"), ("", 443), ("", 7844), ("", 53), tmp_path)
    write_edge_config(cfg)
    loaded = load_edge_config(tmp_path)
    assert loaded == cfg
    assert (loaded.zone, loaded.public_ip) == ("a.com", "203.0.113.10")


def test_credentials_name_the_edge_certificate(tmp_path):
    path = tmp_path / "credentials.json"
    named = Credentials("a", str(uuid.uuid4()), "web", Secret(b"s"), "203.0.113.10:7844", None, "example.com")
    save_credentials(path, named)
    loaded = load_credentials(path)
    assert loaded.edge_name == "example.com" and loaded.edge_server_name == "example.com"
    unnamed = Credentials("a", str(uuid.uuid4()), "web", Secret(b"s"), "203.0.113.10:7844")
    assert unnamed.edge_server_name == "203.0.113.10"
