"""Signed-in sessions, held by the page (in memory), not by the browser.

The cookie carries only a random token. Signing out forgets it, so a cookie
copied before then opens nothing after; a session also ends after
SESSION_HOURS, when the supervisor is removed, and when their password is
set again (the session keeps a digest of the password hash it was opened
with). A restart of the page ends every session. A session also holds the
language its supervisor chose for the page (None: the dock's).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, replace

from .clock import Clock

SESSION_HOURS = 8


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str  # the token every form of this session posts
    password_tag: str  # password_tag() of the hash the user signed in against
    started: float  # monotonic
    language: str | None = None  # chosen on the page; None: the dock's


def password_tag(password_hash: str) -> str:
    """Changes whenever a password is set (the hash is salted each time)."""
    return hashlib.sha256(password_hash.encode()).hexdigest()


def _key(token: str) -> str:
    # stored by digest: a lookup's timing says nothing about the tokens held
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, clock: Clock, lifetime_s: float = SESSION_HOURS * 3600) -> None:
        self._clock = clock
        self._lifetime_s = lifetime_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()  # waitress answers from several threads

    def start(self, user: str, tag: str) -> tuple[str, Session]:
        """A new session; the token goes into the cookie, nowhere else."""
        token = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), tag, self._clock.monotonic())
        with self._lock:
            self._drop_expired()
            self._sessions[_key(token)] = session
        return token, session

    def find(self, token: str) -> Session | None:
        """The live session of a token; None for an unknown or expired one."""
        with self._lock:
            session = self._sessions.get(_key(token))
            if session is not None and self._expired(session):
                del self._sessions[_key(token)]
                return None
            return session

    def set_language(self, token: str, language: str) -> None:
        with self._lock:
            session = self._sessions.get(_key(token))
            if session is not None:
                self._sessions[_key(token)] = replace(session, language=language)

    def end(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(_key(token), None)

    def _expired(self, session: Session) -> bool:
        return self._clock.monotonic() - session.started >= self._lifetime_s

    def _drop_expired(self) -> None:
        for key in [k for k, s in self._sessions.items() if self._expired(s)]:
            del self._sessions[key]
