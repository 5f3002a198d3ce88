"""Dashboard login sessions: opaque cookie values mapped to an account, in memory.

Only a SHA-256 of each cookie value is kept; a session ends at logout, after
`SESSION_LIFETIME`, when the edge restarts, or when `MAX_SESSIONS` newer ones push it out.
Each session carries the CSRF token its forms must echo.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

from edge.registry.models import Account

COOKIE = "burrow_session"
SESSION_LIFETIME = 12 * 3600  # seconds from login; the cookie's Max-Age too
MAX_SESSIONS = 1000  # the oldest session is dropped beyond this


@dataclass
class Session:
    account: Account
    csrf: str
    expires: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, message) shown once

    def check_csrf(self, token: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), token.encode())


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class SessionStore:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._sessions: dict[str, Session] = {}  # insertion order = age

    def create(self, account: Account) -> tuple[str, Session]:
        """A new session for `account` and the cookie value that names it."""
        cookie = secrets.token_urlsafe(32)
        session = Session(account, secrets.token_urlsafe(32), self._clock() + SESSION_LIFETIME)
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[_key(cookie)] = session
        return cookie, session

    def get(self, cookie: str | None) -> Session | None:
        """The live session named by `cookie`, if any."""
        if not cookie:
            return None
        key = _key(cookie)
        session = self._sessions.get(key)
        if session is not None and session.expires <= self._clock():
            del self._sessions[key]
            return None
        return session

    def drop(self, cookie: str | None) -> None:
        if cookie:
            self._sessions.pop(_key(cookie), None)

    def drop_account(self, account_id: str) -> None:
        """End every session of an account (revoked since login)."""
        for key in [k for k, s in self._sessions.items() if s.account.id == account_id]:
            del self._sessions[key]
