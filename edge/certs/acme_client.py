"""A small RFC 8555 ACME client on httpx + cryptography: account, order, challenges, finalize.

Only what the edge needs: an ES256 account key, `dns`-type identifiers, one
challenge type per name, polling that honours `Retry-After`. Every failure is an
`AcmeError` with a one-line reason and, for rate limits, the wait the CA asked for.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import httpx
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from edge.certs.challenges import b64url
from shared.errors import BurrowError

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0  # each HTTP request to the CA
POLL_TIMEOUT = 120.0  # an authorization or order that is still pending after this fails
POLL_DEFAULT = 1.0  # seconds between polls when the CA sends no Retry-After
POLL_MAX = 10.0
MAX_RETRY_AFTER = 86400.0  # a longer Retry-After is capped to a day
BAD_NONCE_RETRIES = 3
MAX_RESPONSE = 1_000_000  # bytes: a larger answer from the CA is refused
PROBLEM = "urn:ietf:params:acme:error:"


class AcmeError(BurrowError):
    """Issuance failed; `retry_after` (seconds) when the CA said when to come back."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Challenge:
    """One challenge the edge must answer for `name` before the CA validates it."""

    kind: str
    name: str
    token: str
    key_authorization: str


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - time.time()), MAX_RETRY_AFTER)


def _problem(response: httpx.Response, what: str) -> AcmeError:
    try:
        body = response.json()
        kind = str(body.get("type", "")).removeprefix(PROBLEM)
        detail = str(body.get("detail", ""))[:300]
    except (ValueError, AttributeError):
        kind, detail = "", response.text[:200].strip()
    reason = f"{what}: the CA answered {response.status_code}"
    reason += f" {kind}" if kind else ""
    reason += f": {detail}" if detail else ""
    return AcmeError(reason, _retry_after(response))


def _jwk(key: ec.EllipticCurvePrivateKey) -> dict:
    numbers = key.public_key().public_numbers()
    return {"crv": "P-256", "kty": "EC", "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}


def thumbprint(key: ec.EllipticCurvePrivateKey) -> str:
    """RFC 7638 JWK thumbprint, the second half of every key authorization."""
    canonical = json.dumps(_jwk(key), sort_keys=True, separators=(",", ":")).encode()
    return b64url(hashlib.sha256(canonical).digest())


def make_csr(key: ec.EllipticCurvePrivateKey, names: list[str]) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


class AcmeClient:
    """One account at one ACME directory; `issue()` runs an order to the end."""

    def __init__(self, http: httpx.AsyncClient, directory_url: str, account_key: ec.EllipticCurvePrivateKey, email: str | None) -> None:
        self.http = http
        self.directory_url = directory_url
        self.key = account_key
        self.email = email
        self._directory: dict | None = None
        self._kid: str | None = None
        self._nonce: str | None = None

    async def _request(self, method: str, url: str, what: str, **kwargs) -> httpx.Response:
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise AcmeError(f"{what}: no answer from {url} within {REQUEST_TIMEOUT:g}s") from None
        except httpx.HTTPError as exc:
            raise AcmeError(f"{what}: cannot reach {url}: {exc or type(exc).__name__}") from None
        if len(response.content) > MAX_RESPONSE:
            raise AcmeError(f"{what}: the answer from {url} is larger than {MAX_RESPONSE} bytes")
        if nonce := response.headers.get("Replay-Nonce"):
            self._nonce = nonce
        return response

    async def directory(self) -> dict:
        """The directory, checked to be one (ACME URLs for newNonce, newAccount, newOrder)."""
        if self._directory is None:
            response = await self._request("GET", self.directory_url, "reading the ACME directory")
            try:
                body = response.json()
            except ValueError:
                body = None
            required = ("newNonce", "newAccount", "newOrder")
            if response.status_code != 200 or not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in required):
                raise AcmeError(
                    f"{self.directory_url} is not an ACME directory (HTTP {response.status_code}; "
                    f"expected JSON with {', '.join(required)})"
                )
            self._directory = body
        return self._directory

    async def _new_nonce(self) -> str:
        response = await self._request("HEAD", (await self.directory())["newNonce"], "getting a nonce")
        if not self._nonce:
            raise AcmeError(f"getting a nonce: the CA answered {response.status_code} without a Replay-Nonce")
        return self._nonce

    def _sign(self, url: str, payload: dict | None, nonce: str) -> bytes:
        protected = {"alg": "ES256", "nonce": nonce, "url": url}
        if self._kid:
            protected["kid"] = self._kid
        else:
            protected["jwk"] = _jwk(self.key)
        protected_b64 = b64url(json.dumps(protected).encode())
        payload_b64 = "" if payload is None else b64url(json.dumps(payload).encode())
        der = self.key.sign(f"{protected_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return json.dumps({"protected": protected_b64, "payload": payload_b64, "signature": signature}).encode()

    async def post(self, url: str, payload: dict | None, what: str, accept: str | None = None) -> httpx.Response:
        """A signed POST (`payload` None: POST-as-GET); a bad nonce is retried with a fresh one."""
        headers = {"Content-Type": "application/jose+json"}
        if accept:
            headers["Accept"] = accept
        for attempt in range(BAD_NONCE_RETRIES):
            nonce, self._nonce = self._nonce or await self._new_nonce(), None
            response = await self._request("POST", url, what, content=self._sign(url, payload, nonce), headers=headers)
            if response.status_code < 400:
                return response
            error = _problem(response, what)
            if "accountDoesNotExist" in str(error):
                self._kid = None  # the CA forgot the account (a reset server): register again next time
            if "badNonce" not in str(error) or attempt == BAD_NONCE_RETRIES - 1:
                raise error
        raise AssertionError("unreachable")

    async def account(self) -> None:
        """Register (or find) the account for our key; sets the key id used to sign."""
        if self._kid:
            return
        payload: dict = {"termsOfServiceAgreed": True}
        if self.email:
            payload["contact"] = [f"mailto:{self.email}"]
        response = await self.post((await self.directory())["newAccount"], payload, "registering the ACME account")
        kid = response.headers.get("Location")
        if not kid:
            raise AcmeError("registering the ACME account: the CA gave no account URL")
        self._kid = kid

    async def _json(self, url: str, what: str) -> dict:
        response = await self.post(url, None, what)
        try:
            return response.json()
        except ValueError:
            raise AcmeError(f"{what}: the CA answered with something that is not JSON") from None

    async def _poll(self, url: str, what: str, done: Callable[[dict], bool]) -> dict:
        """POST-as-GET `url` until `done(body)`, honouring Retry-After, within POLL_TIMEOUT."""
        with trio.move_on_after(POLL_TIMEOUT):
            while True:
                response = await self.post(url, None, what)
                try:
                    body = response.json()
                except ValueError:
                    raise AcmeError(f"{what}: the CA answered with something that is not JSON") from None
                if done(body):
                    return body
                await trio.sleep(min(_retry_after(response) or POLL_DEFAULT, POLL_MAX))
        raise AcmeError(f"{what}: still pending after {POLL_TIMEOUT:g}s")

    async def issue(
        self,
        names: list[str],
        kind_for: Callable[[str], str],
        answer: Callable[[Challenge], AbstractContextManager],
        cert_key: ec.EllipticCurvePrivateKey,
    ) -> bytes:
        """Order a certificate for `names`; returns the PEM chain.

        `kind_for(name)` picks the challenge type; `answer(challenge)` is a context
        manager that publishes the answer while the CA validates it.
        """
        await self.account()
        directory = await self.directory()
        response = await self.post(
            directory["newOrder"], {"identifiers": [{"type": "dns", "value": name} for name in names]}, "creating the order"
        )
        order, order_url = response.json(), response.headers.get("Location", "")
        for authz_url in order.get("authorizations", []):
            await self._authorize(authz_url, kind_for, answer)
        csr = make_csr(cert_key, names)
        await self.post(order["finalize"], {"csr": b64url(csr)}, "finalizing the order")
        order = await self._poll(order_url, "waiting for the certificate", lambda body: body.get("status") in ("valid", "invalid"))
        if order.get("status") != "valid" or not order.get("certificate"):
            raise AcmeError(f"the order ended {order.get('status')}: {order.get('error', {}).get('detail', 'no detail')}")
        response = await self.post(order["certificate"], None, "downloading the certificate", accept="application/pem-certificate-chain")
        return response.content

    async def _authorize(self, authz_url: str, kind_for, answer) -> None:
        authz = await self._json(authz_url, "reading an authorization")
        if authz.get("status") == "valid":
            return
        name = authz["identifier"]["value"]
        shown = f"*.{name}" if authz.get("wildcard") else name
        kind = "dns-01" if authz.get("wildcard") else kind_for(shown)
        offered = {challenge.get("type"): challenge for challenge in authz.get("challenges", [])}
        if kind not in offered:
            raise AcmeError(f"{shown}: the CA does not offer {kind} (it offers {', '.join(offered) or 'nothing'})")
        challenge = offered[kind]
        task = Challenge(kind, shown, challenge["token"], f"{challenge['token']}.{thumbprint(self.key)}")
        what = f"validating {shown} by {kind}"
        with answer(task):
            log.info("acme.challenge name=%s type=%s", shown, kind)
            await self.post(challenge["url"], {}, what)
            authz = await self._poll(authz_url, what, lambda body: body.get("status") not in ("pending", "processing"))
        if authz.get("status") != "valid":
            errors = [c.get("error", {}).get("detail", "") for c in authz.get("challenges", []) if c.get("error")]
            raise AcmeError(f"{what} failed: {'; '.join(filter(None, errors)) or authz.get('status')}")
