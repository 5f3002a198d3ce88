"""People signing in to a protected hostname: passwords, the login page, session cookies.

Passwords are stored as scrypt hashes (memory-hard: n=2^14, r=8 → 16 MiB per
check). A session is an opaque cookie `burrow_access` bound to one hostname,
carrying email and expiry under an HMAC; it is host-only (no Domain),
HttpOnly, Secure, SameSite=Lax, and lives `SESSION_LIFETIME` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import secrets
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, quote, urlsplit

import trio

from edge.registry.policy import Policy
from shared.events import Headers, RequestHead, ResponseHead

log = logging.getLogger(__name__)

PREFIX = b"/cdn-cgi/access/"
LOGIN_PATH = "/cdn-cgi/access/login"
LOGOUT_PATH = "/cdn-cgi/access/logout"
COOKIE = "burrow_access"
SESSION_LIFETIME = 8 * 3600  # seconds
MAX_FORM = 4096  # bytes of a login form
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored` (constant-time comparison)."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        actual = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual.hex(), digest)


class Sessions:
    """Mints and checks session cookies with one MAC key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def mint(self, email: str, host: str, now: float) -> str:
        payload = base64.urlsafe_b64encode(f"{email}|{host}|{int(now) + SESSION_LIFETIME}".encode()).decode().rstrip("=")
        return f"{payload}.{self._mac(payload.encode())}"

    def verify(self, cookie: str | None, host: str, now: float) -> str | None:
        """The email a valid, unexpired session for `host` names, else None."""
        if not cookie or "." not in cookie:
            return None
        payload, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(self._mac(payload.encode()), mac):
            return None
        try:
            email, bound, expires = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode().split("|")
            if bound != host or int(expires) <= now:
                return None
        except ValueError:
            return None
        return email


def session_cookie(head: RequestHead) -> str | None:
    for name, value in head.headers:
        if name == b"cookie":
            try:
                jar = SimpleCookie(value.decode("latin-1"))
            except CookieError:
                continue
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


def without_session_cookie(headers: Headers) -> Headers:
    """The headers with the session cookie taken out of every Cookie header (the origin never sees it)."""
    out = []
    for name, value in headers:
        if name == b"cookie":
            kept = [c for c in value.split(b";") if c.strip().split(b"=", 1)[0] != COOKIE.encode()]
            if not kept:
                continue
            value = b";".join(kept).strip()
        out.append((name, value))
    return tuple(out)


def login_location(target: bytes) -> bytes:
    return f"{LOGIN_PATH}?redirect_url={quote(target.decode('latin-1'), safe='')}".encode()


def _safe_redirect(url: str) -> str:
    """Only a path on this hostname: never another site."""
    parts = urlsplit(url)
    if not url.startswith("/") or url.startswith("//") or parts.scheme or parts.netloc or "\\" in url:
        return "/"
    return url


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · {host}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;max-width:22rem;margin:4rem auto}}label,input,button{{display:block;width:100%;margin:.4rem 0}}</style>
</head><body><h1>Sign in to {host}</h1>{message}
<form method="post" action="{action}">
<input type="hidden" name="redirect_url" value="{redirect}">
<label>Email <input type="email" name="email" id="email" autocomplete="username" required></label>
<label>Password <input type="password" name="password" id="password" autocomplete="current-password" required></label>
<button type="submit" id="signin">Sign in</button>
</form></body></html>
"""


def login_page(host: str, redirect: str, message: str = "") -> bytes:
    note = f'<p role="alert">{html.escape(message)}</p>' if message else ""
    return PAGE.format(host=html.escape(host), message=note, action=LOGIN_PATH, redirect=html.escape(redirect)).encode()


async def serve(exchange, host: str, found: tuple[str, Policy], snapshot, sessions: Sessions, now: float) -> None:
    """Answer a request under /cdn-cgi/access/ on a hostname that lets people sign in."""
    path, _, query = exchange.head.target.decode("latin-1").partition("?")
    method = exchange.head.method
    if path == LOGOUT_PATH:
        page = b"<!doctype html><title>Signed out</title><p>Signed out. <a href=\"" + LOGIN_PATH.encode() + b"\">Sign in</a></p>"
        await _send(exchange, 200, page, _set_cookie("", 0))
        return
    if path != LOGIN_PATH:
        await _send(exchange, 404, b"<!doctype html><title>Not found</title><p>Not found</p>")
        return
    if method != b"POST":
        redirect = _safe_redirect(parse_qs(query).get("redirect_url", ["/"])[0])
        await _send(exchange, 200, login_page(host, redirect))
        return
    form = await _form(exchange)
    if form is None:
        await _send(exchange, 413, login_page(host, "/", "The form is too large."))
        return
    owner, policy = found
    email = form.get("email", "").strip().lower()
    password = form.get("password", "")
    redirect = _safe_redirect(form.get("redirect_url", "/"))
    stored = snapshot.users.get((owner, email)) if email in policy.allow_emails else None
    # Always run the KDF, so an unknown email costs as much as a wrong password.
    valid = await trio.to_thread.run_sync(verify_password, password, stored or DUMMY_HASH)
    if stored is None or not valid:
        log.info("access.login_failed host=%s", host)
        await _send(exchange, 401, login_page(host, redirect, "Wrong email or password."))
        return
    log.info("access.login host=%s", host)
    cookie = _set_cookie(sessions.mint(email, host, now), SESSION_LIFETIME)
    await _send(exchange, 303, b"", cookie + ((b"location", redirect.encode()),))


async def _form(exchange) -> dict[str, str] | None:
    body = bytearray()
    while chunk := await exchange.receive_body():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"))
    return {key: values[0] for key, values in fields.items()}


def _set_cookie(value: str, max_age: int) -> Headers:
    return ((b"set-cookie", f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax".encode()),)


async def _send(exchange, status: int, body: bytes, headers: Headers = ()) -> None:
    base = (
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
        (b"x-frame-options", b"DENY"),
    )
    await exchange.send_response(ResponseHead(status, base + headers))
    if body:
        await exchange.send_body(body)
    await exchange.end()


DUMMY_HASH = hash_password(secrets.token_hex(16))
