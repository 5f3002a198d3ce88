"""`originRequest.access.required`: check the edge's `Burrow-Access-Jwt-Assertion` before a request
reaches the origin, so a request that did not pass the edge's Access is refused.

The JWKS comes from the edge's HTTPS listener at `https://TEAM/cdn-cgi/access/certs`, where TEAM
is `access.teamName` (`HOST[:PORT]`, default: the edge's zone on 443), dialled at the tunnel
endpoint's address. Keys are cached for `JWKS_TTL` seconds; an unknown key id refetches them,
at most once per `JWKS_MIN_REFETCH` seconds.
"""

from __future__ import annotations

import logging
import ssl
import time

import httpx
import jwt
import trio

from connector.egress.proxies import ProxyChoice
from connector.ingress.origin_request import Access
from connector.ingress.rules import Rule, normalize_host
from shared.credentials import Credentials
from shared.errors import BurrowError
from shared.events import RequestHead
from shared.pages import error_page
from shared.tunnel_stream import TunnelStream
from shared.values import parse_hostport

log = logging.getLogger(__name__)

ASSERTION = b"burrow-access-jwt-assertion"
JWKS_PATH = "/cdn-cgi/access/certs"
JWKS_TTL = 300.0
JWKS_MIN_REFETCH = 10.0
FETCH_TIMEOUT = 10.0
LEEWAY = 5  # seconds of clock skew tolerated on exp/nbf/iat
ALGORITHMS = ["ES256"]


class AccessDenied(BurrowError):
    http_status = 403


def jwks_location(creds: Credentials, access: Access) -> tuple[str, str, int]:
    """(address to dial, TLS/Host name, port) of the JWKS."""
    team = access.team_name.removeprefix("https://").rstrip("/") or creds.edge_server_name
    name, port = parse_hostport(team) if ":" in team else (team, 443)
    return parse_hostport(creds.endpoint)[0], name, port


class AccessVerifier:
    """Verifies assertions against the edge's JWKS, fetched lazily and cached per location."""

    def __init__(self, creds: Credentials, egress: ProxyChoice = ProxyChoice()) -> None:
        self.creds = creds
        self.egress = egress  # the JWKS comes from the edge: the same way out as the tunnel connections
        self._keys: dict[tuple[str, str, int], tuple[float, dict[str, jwt.PyJWK]]] = {}
        self._lock = trio.Lock()

    async def check(self, head: RequestHead, host: str, access: Access) -> dict:
        """The assertion's claims, or AccessDenied saying why not."""
        token = head.header(ASSERTION)
        if not token:
            raise AccessDenied("this origin requires Access: the request carries no Burrow-Access-Jwt-Assertion")
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
        except jwt.PyJWTError:
            raise AccessDenied("the Access assertion is not a valid JWT") from None
        key = await self._key(jwks_location(self.creds, access), kid)
        audience = list(access.aud_tag) or [host]
        issuer = f"https://{self.creds.edge_name}" if self.creds.edge_name else None
        try:
            return jwt.decode(
                token, key, algorithms=ALGORITHMS, audience=audience, issuer=issuer, leeway=LEEWAY,
                options={"require": ["exp", "iat", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AccessDenied("the Access assertion has expired") from None
        except jwt.InvalidAudienceError:
            raise AccessDenied("the Access assertion is for another audience") from None
        except jwt.PyJWTError as exc:
            raise AccessDenied(f"the Access assertion is invalid: {exc}") from None

    async def _key(self, where: tuple[str, str, int], kid: str) -> jwt.PyJWK:
        async with self._lock:
            now = time.monotonic()
            fetched, keys = self._keys.get(where, (-JWKS_TTL, {}))
            stale = now - fetched >= JWKS_TTL or (kid not in keys and now - fetched >= JWKS_MIN_REFETCH)
            if stale:
                self._keys[where] = (now, keys)  # a failed fetch is not retried before JWKS_MIN_REFETCH either
                keys = await self._fetch(*where)
                self._keys[where] = (now, keys)
        if kid not in keys:
            raise AccessDenied("the Access assertion is signed by a key the edge does not publish")
        return keys[kid]

    async def _fetch(self, address: str, name: str, port: int) -> dict[str, jwt.PyJWK]:
        host = f"[{address}]" if ":" in address else address
        verify = ssl.create_default_context(cadata=self.creds.edge_ca) if self.creds.edge_ca else True
        try:
            transport = httpx.AsyncHTTPTransport(verify=verify, proxy=self.egress.httpx_proxy(address))
            async with httpx.AsyncClient(transport=transport, timeout=FETCH_TIMEOUT) as client:
                response = await client.get(
                    f"https://{host}:{port}{JWKS_PATH}", headers={"host": name}, extensions={"sni_hostname": name}
                )
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            log.warning("access.jwks_failed url=https://%s:%d%s error=%s", name, port, JWKS_PATH, exc)
            raise AccessDenied(f"cannot fetch the edge's Access keys from https://{name}:{port}{JWKS_PATH}") from None
        log.info("access.jwks_fetched url=https://%s:%d%s keys=%d", name, port, JWKS_PATH, len(keys))
        return {key.key_id: key for key in keys if key.key_id}


async def access_admits(stream: TunnelStream, rule: Rule, verifier: AccessVerifier | None) -> bool:
    """True when the stream's assertion verifies; otherwise answer 403 from the connector."""
    host = normalize_host(stream.head.authority.decode("latin-1"))
    try:
        if verifier is None:
            raise AccessDenied("this origin requires Access, but the connector cannot verify assertions")
        claims = await verifier.check(stream.head, host, rule.origin_request.access)
    except AccessDenied as exc:
        log.info("access.refused host=%s rule=%d reason=%s", host, rule.index, exc)
        head, body = error_page(403, "connector", str(exc))
        await stream.send_response(head)
        await stream.send(body)
        await stream.end()
        return False
    log.debug("access.admitted host=%s sub=%s", host, claims.get("sub"))
    return True
