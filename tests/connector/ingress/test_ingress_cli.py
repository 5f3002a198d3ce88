"""`burrow tunnel ingress validate|rule`: every problem, the matching rule and why, exit codes;
and `tunnel run` refusing what `validate` only warns about."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.cli import app
from shared.errors import ConfigError

runner = CliRunner()

GOOD = """\
    tunnel: web
    originRequest:
      connectTimeout: 10s
    ingress:
      - hostname: app.example.test
        service: http://localhost:8000
      - hostname: "*.example.test"
        path: ^/api(/|$)
        service: https://localhost:8443
        originRequest:
          noTLSVerify: true
          bastionMode: false
      - hostname: ssh.example.test
        service: ssh://localhost:22
      - service: http_status:404
"""

BAD = """\
    ingress:
      - hostname: app.*.example.test
        path: "(["
        service: h2c://localhost:8000
        originRequest:
          connectTimeout: 30
          proxyType: socks
      - service: http://localhost:8000
      - hostname: last.example.test
        service: http_status:999x
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("BURROW_HOME", str(tmp_path / "home"))

    def write(text: str):
        path = tmp_path / "config.yml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


def invoke(*args):
    return runner.invoke(app, ["tunnel", "ingress", *map(str, args)])


def test_validate_ok_prints_ok_and_warns_about_ignored_keys(config):
    result = invoke("validate", "--config", config(GOOD))
    assert result.exit_code == 0, result.output
    assert result.stdout == "OK\n"
    assert "warning:" in result.stderr and "ingress rule 2: originRequest.bastionMode: is not supported" in result.stderr


def test_validate_prints_every_problem_with_rule_and_field(config):
    path = config(BAD)
    result = invoke("validate", "--config", path)
    assert result.exit_code == 2
    assert "OK" not in result.stdout and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {path} line 2: ingress rule 1: hostname: 'app.*.example.test': a wildcard (\"*\") is allowed only as "
        'the whole first label, e.g. "*.example.com"',
        f"error: {path} line 3: ingress rule 1: path: invalid regex '([': unterminated character set at position 1",
        f"error: {path} line 4: ingress rule 1: service: 'h2c://localhost:8000' has an unknown scheme 'h2c' "
        "(known: http://, https://, ws://, wss://, unix:, unix+tls:, tcp://, ssh://, rdp://, smb://, "
        "http_status:NNN, hello_world, pool:NAME)",
        f"error: {path} line 6: ingress rule 1: originRequest.connectTimeout: duration 30 needs a unit, e.g. 30s "
        "(units: ns, us, ms, s, m, h)",
        f"error: {path} line 8: ingress rule 2: rule 2 is a catch-all, so the rules after it would never match",
        f"error: {path} line 10: ingress rule 3: service: invalid HTTP status code '999x' in 'http_status:999x' (100-999)",
        f"error: {path} line 9: ingress rule 3: the last rule must match every request: leave out hostname "
        '(or use "*") and path, e.g. service: http_status:404',
    ]
    assert f"warning: {path} line 7: ingress rule 1: originRequest.proxyType: is not supported" in result.stderr


def test_validate_names_bad_rewrite_and_mtls_values_by_rule_and_key():
    path = Path(__file__).parents[2] / "data" / "config" / "invalid" / "bad-origin-edits.yml"
    result = invoke("validate", "--config", path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    expected = re.findall(r"^# error: config\.yml (.+)$", path.read_text(), re.MULTILINE)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {path} {line}" for line in expected]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ingress: [\n", "line 2: "),
        ("ingress: {service: x}\n", "ingress must be a list of rules"),
        ("ingress:\n  - service: http://x\n    servce: y\n", "servce: unknown key (did you mean 'service'?)"),
    ],
    ids=["yaml-syntax", "ingress-not-a-list", "typo"],
)
def test_validate_bad_input_is_one_clear_line(config, text, message):
    result = invoke("validate", "--config", config(text))
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_validate_missing_file(tmp_path):
    result = invoke("validate", "--config", tmp_path / "nope.yml")
    assert result.exit_code == 2 and "no such file" in result.stderr


RULES = [
    ("exact", "https://app.example.test/x", 1, "service: http://localhost:8000",
     "why: hostname app.example.test equals app.example.test; no path"),
    ("wildcard-path", "https://a.b.example.test/api/v1", 2, "service: https://localhost:8443",
     "why: hostname *.example.test matches a.b.example.test; path ^/api(/|$) matches /api/v1"),
    ("port-and-query", "http://APP.example.test:8080/?q=1", 1, "service: http://localhost:8000", "why: hostname"),
    ("raw-tcp", "ssh.example.test", 3, "service: ssh://localhost:22", "why: hostname ssh.example.test equals"),
    ("wildcard-unanchored-elsewhere", "https://x.example.test/v1/api", 4, "service: http_status:404",
     "why: catch-all (no hostname, no path): no earlier rule matched"),
]


@pytest.mark.parametrize(("url", "index", "service", "why"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rule_prints_the_match_and_why(config, url, index, service, why):
    result = invoke("rule", "--config", config(GOOD), url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Matched rule #{index}\n")
    assert f"\t{service}\n" in result.stdout
    assert f"\t{why}" in result.stdout


def test_rule_with_a_bad_config_fails(config):
    result = invoke("rule", "--config", config(BAD), "https://app.example.test/")
    assert result.exit_code == 2
    assert "7 problems in the ingress rules" in result.stderr and "Traceback" not in result.output


# cloudflared's component-test config: its caPool names a file that is not on this machine.

CLOUDFLARED = Path(__file__).parents[2] / "data" / "config" / "valid" / "cloudflared-component-tests.yml"
CLOUDFLARED_EXPECT = re.findall(r"^# expect: (\S+) -> (\d+)$", CLOUDFLARED.read_text(), re.MULTILINE)
CA_LINE = next(n for n, line in enumerate(CLOUDFLARED.read_text().splitlines(), 1) if "caPool:" in line)
MISSING_CA = f"{CLOUDFLARED} line {CA_LINE}: ingress rule 1: originRequest.caPool: /etc/certs/ca.pem: no such file"


def test_validate_warns_about_a_missing_ca_pool_naming_rule_key_and_line():
    result = invoke("validate", "--config", CLOUDFLARED)
    assert result.exit_code == 0, result.output
    assert result.stdout == "OK\n"
    assert f"warning: {MISSING_CA}\n" in result.stderr and "error" not in result.stderr


@pytest.mark.parametrize(("url", "index"), CLOUDFLARED_EXPECT, ids=[url for url, _ in CLOUDFLARED_EXPECT])
def test_rule_answers_as_cloudflared_whatever_files_are_missing(url, index):
    result = invoke("rule", "--config", CLOUDFLARED, url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Matched rule #{index}\n")


def test_run_refuses_to_start_with_the_same_message(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("BURROW")}
    result = subprocess.run(
        [Path(sys.executable).parent / "burrow", "tunnel", "run", "--config", CLOUDFLARED],
        capture_output=True, text=True, timeout=60, env={**env, "BURROW_HOME": str(tmp_path)},
    )
    assert result.returncode == ConfigError.exit_code
    assert f"error: {MISSING_CA}\n" in result.stderr and "Traceback" not in result.stderr
