"""Issue 7 acceptance 4: Access with service tokens. The edge refuses a protected hostname without
a token and stamps an allowed request with a JWT that verifies against its JWKS, with the hostname
as audience; the connector with `access.required` refuses requests without a valid assertion."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest

from connector.access.verifier import AccessDenied, AccessVerifier
from connector.ingress.origin_request import Access
from shared.credentials import load_credentials
from shared.events import RequestHead
from tests.e2e.conftest import ZONE, start_origin
from tests.e2e.test_management import one_line_error

SVC = f"svc.{ZONE}"  # policy: token required; connector: no check
GUARDED = f"guarded.{ZONE}"  # connector: access.required (audience = hostname)
OTHER_AUD = f"aud.{ZONE}"  # connector: access.required for another audience
OPEN = f"open.{ZONE}"  # no policy; connector: access.required


@pytest.fixture(scope="module")
def acme(edge):
    env = edge.login("acme")
    edge.cli("burrow", "tunnel", "create", "acme", env=env)
    origin, port = start_origin(edge.tmp, env)
    edge.procs.append(origin)
    team = f"{ZONE}:{edge.https_port}"
    lines = ["tunnel: acme", "ingress:"]
    for host, access in [
        (SVC, None),
        (GUARDED, {"required": True, "teamName": team}),
        (OTHER_AUD, {"required": True, "teamName": team, "audTag": [f"elsewhere.{ZONE}"]}),
        (OPEN, {"required": True, "teamName": team}),
    ]:
        edge.cli("burrow", "tunnel", "route", "dns", "acme", host, env=env)
        lines += [f"  - hostname: {host}", f"    service: http://127.0.0.1:{port}"]
        if access:
            lines += [f"    originRequest: {{access: {json.dumps(access)}}}"]
    lines += ["  - service: http_status:404"]
    config = Path(env["BURROW_HOME"]) / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    out = edge.cli("burrow", "access", "token", "create", "ci", env=env).stdout
    creds = dict(line.split(": ", 1) for line in out.splitlines())
    for host in (SVC, GUARDED, OTHER_AUD):
        edge.cli("burrow", "access", "policy", "set", host, "--allow-token", "ci", env=env)
    proc = edge.start(["burrow", "tunnel", "run", "--config", config, "--ha-connections", 1, "acme"], "acme", env)
    proc.wait_for_log(r"tunnel\.registered index=")
    return env, creds, proc


def token_headers(creds: dict) -> list[str]:
    return ["-H", f"Burrow-Access-Client-Id: {creds['Client-Id']}", "-H", f"Burrow-Access-Client-Secret: {creds['Client-Secret']}"]


def request(edge, host: str, *extra: str) -> tuple[int, str, bytes]:
    result = edge.curl(host, "/", "-D", "-", "-o", str(edge.tmp / "body"), "-w", "%{http_code}", *extra)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    return int(out[-3:]), out[:-3].lower(), (edge.tmp / "body").read_bytes()


def jwks(edge) -> dict:
    result = edge.curl(ZONE, "/cdn-cgi/access/certs")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_token_is_shown_once_and_listed(edge, acme):
    env, creds, _ = acme
    assert creds["Client-Id"].endswith(".access") and len(creds["Client-Secret"]) == 64
    listed = edge.cli("burrow", "access", "token", "list", env=env).stdout
    assert "ci" in listed and creds["Client-Id"] in listed and creds["Client-Secret"] not in listed
    one_line_error(edge.cli("burrow", "access", "token", "create", "ci", env=env, check=False), "already exists", 1)
    one_line_error(edge.cli("burrow", "access", "token", "revoke", "nope", env=env, check=False), "'nope' not found", 1)
    with open(edge.home / "registry.db", "rb") as db:
        assert creds["Client-Secret"].encode() not in db.read()  # only its hash is stored


def test_without_a_token_the_edge_refuses(edge, acme):
    code, headers, body = request(edge, SVC)
    assert code == 403 and "burrow-error: edge" in headers and b"requires Access" in body
    code, _, _ = request(edge, SVC, "-H", "Accept: text/html")  # no login for this hostname: no redirect
    assert code == 403
    _, creds, _ = acme
    wrong = {**creds, "Client-Secret": "0" * 64}
    assert request(edge, SVC, *token_headers(wrong))[0] == 403
    assert request(edge, SVC, "-H", f"Burrow-Access-Client-Id: {creds['Client-Id']}")[0] == 403


def test_with_a_token_the_origin_gets_a_jwt_for_the_hostname(edge, acme):
    _, creds, _ = acme
    code, _, body = request(edge, SVC, *token_headers(creds), "-H", "Cookie: burrow_access=x; keep=1")
    assert code == 200
    seen = dict(json.loads(body)["headers"])
    assert "burrow-access-client-secret" not in seen and "burrow-access-client-id" not in seen
    assert seen["cookie"] == "keep=1"  # the Access session cookie never reaches the origin
    assertion = seen["burrow-access-jwt-assertion"]
    keys = jwt.PyJWKSet.from_dict(jwks(edge))
    kid = jwt.get_unverified_header(assertion)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims = jwt.decode(assertion, key, algorithms=["ES256"], audience=SVC, issuer=f"https://{ZONE}")
    assert claims["sub"] == "ci" and claims["aud"] == [SVC]
    assert claims["exp"] - claims["iat"] == 300 and abs(claims["iat"] - time.time()) < 60
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(assertion, key, algorithms=["ES256"], audience=GUARDED)
    api_jwks = json.loads(edge.curl(ZONE, "/api/v1/access/jwks").stdout)
    assert api_jwks == jwks(edge)
    code, _, body = request(edge, SVC, "--http2", *token_headers(creds))  # the same gate over HTTP/2
    assert code == 200 and "burrow-access-jwt-assertion" in dict(json.loads(body)["headers"])
    assert request(edge, SVC, "--http2")[0] == 403


def test_a_spoofed_assertion_is_dropped(edge, acme):
    code, _, body = request(edge, SVC, "-H", "Burrow-Access-Jwt-Assertion: forged", *token_headers(acme[1]))
    assert code == 200
    assertions = [v for k, v in json.loads(body)["headers"] if k == "burrow-access-jwt-assertion"]
    assert len(assertions) == 1 and assertions[0] != "forged"


def test_connector_checks_the_assertion(edge, acme):
    _, creds, proc = acme
    assert request(edge, GUARDED, *token_headers(creds))[0] == 200
    code, headers, body = request(edge, OPEN)  # the edge lets it through without Access
    assert code == 403 and "burrow-error: connector" in headers and b"no Burrow-Access-Jwt-Assertion" in body
    code, headers, body = request(edge, OTHER_AUD, *token_headers(creds))
    assert code == 403 and "burrow-error: connector" in headers and b"another audience" in body
    assert "access.jwks_fetched" in proc.log()


async def test_connector_refuses_expired_wrong_audience_and_foreign_jwts(edge, acme):
    env, _, _ = acme
    creds = load_credentials(Path(env["BURROW_HOME"]) / "acme" / "credentials.json")
    verifier = AccessVerifier(creds)
    access = Access(required=True, team_name=f"{ZONE}:{edge.https_port}")
    kid = jwks(edge)["keys"][0]["kid"]
    key = (edge.home / "access-key.pem").read_bytes()
    now = int(time.time())

    def head(claims: dict, signing_key=key) -> RequestHead:
        claims = {"iss": f"https://{ZONE}", "sub": "ci", "aud": [GUARDED], "iat": now, "exp": now + 60} | claims
        token = jwt.encode(claims, signing_key, algorithm="ES256", headers={"kid": kid})
        return RequestHead(b"GET", b"/", GUARDED.encode(), headers=((b"burrow-access-jwt-assertion", token.encode()),))

    assert (await verifier.check(head({}), GUARDED, access))["sub"] == "ci"
    with pytest.raises(AccessDenied, match="expired"):
        await verifier.check(head({"iat": now - 900, "exp": now - 600}), GUARDED, access)
    with pytest.raises(AccessDenied, match="another audience"):
        await verifier.check(head({"aud": [SVC]}), GUARDED, access)
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(AccessDenied, match="invalid"):
        await verifier.check(head({}, ec.generate_private_key(ec.SECP256R1())), GUARDED, access)
    with pytest.raises(AccessDenied, match="no Burrow-Access-Jwt-Assertion"):
        await verifier.check(RequestHead(b"GET", b"/", GUARDED.encode()), GUARDED, access)


def test_revoked_token_is_refused(edge, acme):
    env, creds, _ = acme
    edge.cli("burrow", "access", "token", "revoke", "ci", env=env)
    assert request(edge, SVC, *token_headers(creds))[0] == 403
    assert "ci" not in edge.cli("burrow", "access", "token", "list", env=env).stdout.split()


def test_secrets_never_reach_the_logs(edge, acme):
    _, creds, _ = acme
    logs = "".join(proc.log() for proc in edge.procs)
    assert "access.jwks_fetched" in logs and "edge.listening" in logs  # the edge's and the connector's logs
    assert creds["Client-Secret"] not in logs
