"""Choosing the proxy: flag > config > environment, curl's NO_PROXY rules, redaction."""

import pytest

from connector.egress.proxies import ProxyURL, bypasses, choose, parse_proxy_url
from shared.errors import ConfigError


def test_parse_keeps_credentials_secret():
    proxy = parse_proxy_url("http://alice:s%40cret@proxy.example:3128", "--proxy")
    assert (proxy.scheme, proxy.host, proxy.port) == ("http", "proxy.example", 3128)
    assert proxy.credentials == ("alice", "s@cret")
    assert str(proxy) == repr(proxy) == "http://alice:***@proxy.example:3128"
    assert "cret" not in f"{proxy} {proxy!r}"
    assert proxy.url(with_secret=True) == "http://alice:s%40cret@proxy.example:3128"


@pytest.mark.parametrize("text, expected", [
    ("proxy.example:8080", ProxyURL("http", "proxy.example", 8080)),  # curl: no scheme means http
    ("socks5://[2001:db8::1]", ProxyURL("socks5", "2001:db8::1", 1080)),  # curl's default port
    ("SOCKS5H://198.18.0.1:1081/", ProxyURL("socks5h", "198.18.0.1", 1081)),
])
def test_parse_forms(text, expected):
    assert parse_proxy_url(text, "x") == expected


@pytest.mark.parametrize("text", ["ftp://h:1", "https://h:1", "http://h:99999", "http://h:1/path", "", "http://:1"])
def test_parse_refuses_with_one_line(text):
    with pytest.raises(ConfigError) as error:
        parse_proxy_url(text, "--proxy")
    assert str(error.value).startswith("--proxy: ") and "\n" not in str(error.value)


def test_errors_never_show_the_password():
    with pytest.raises(ConfigError) as error:
        parse_proxy_url("ftp://bob:hunter2@h:1", "$HTTPS_PROXY")
    assert "hunter2" not in str(error.value) and "bob:***@h:1" in str(error.value)


def test_precedence_flag_config_environment():
    env = {"HTTPS_PROXY": "http://env-upper:1", "https_proxy": "http://env-lower:1", "ALL_PROXY": "socks5://all:1"}
    assert choose("http://flag:1", "http://config:1", env=env).proxy.host == "flag"
    assert choose(None, "http://config:1", env=env).proxy.host == "config"
    assert choose(None, None, env=env).proxy.host == "env-lower"  # curl reads the lowercase form first
    assert choose(None, None, env={"ALL_PROXY": "socks5://all:1", "http_proxy": "http://h:1"}).proxy.host == "all"
    assert choose(None, None, env={"http_proxy": "http://plain-http-only:1"}).proxy is None  # TLS never uses it


def test_no_proxy_applies_to_every_source():
    env = {"NO_PROXY": "edge.example.com"}
    for flag, config in (("http://flag:1", None), (None, "http://config:1")):
        choice = choose(flag, config, env=env)
        assert choice.for_host("edge.example.com") is None
        assert choice.for_host("other.example.com") is not None
    assert choose(None, None, env={"no_proxy": "*", "ALL_PROXY": "http://p:1"}).for_host("anything") is None


@pytest.mark.parametrize("host, entries, expected", [
    ("edge.example.com", "example.com", True),  # a name covers its subdomains
    ("edge.example.com", ".example.com", True),  # a leading dot is ignored
    ("example.com", ".example.com", True),
    ("badexample.com", "example.com", False),  # but not other names ending the same way
    ("EDGE.Example.COM.", "edge.example.com", True),
    ("198.18.0.7", "198.18.0.0/15", True),  # CIDR
    ("198.20.0.7", "198.18.0.0/15", False),
    ("198.18.0.7", "198.18.0.7", True),
    ("::1", "[::1]", True),
    ("2001:db8::5", "2001:db8::/32", True),
    ("198.18.0.7", "example.com, 10.0.0.0/8", False),
    ("anything", "a.example *", True),
])
def test_no_proxy_matches_like_curl(host, entries, expected):
    assert bypasses(host, tuple(entries.replace(",", " ").split())) is expected


def test_a_bad_url_names_where_it_came_from():
    with pytest.raises(ConfigError, match=r"^/etc/burrow/web.yml: proxy: 'ftp://h:1' must be"):
        choose(None, "ftp://h:1", "/etc/burrow/web.yml", env={})
    with pytest.raises(ConfigError, match=r"^\$all_proxy: 'gopher://h:1' must be"):
        choose(None, None, env={"all_proxy": "gopher://h:1"})
