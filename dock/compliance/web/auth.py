"""Signing in and out, and who is signed in.

Every request passes `require_sign_in` first: it finds the request's session
(sessions.py: held by the page, the cookie is only a token) and sends anyone
without one to the sign-in form, except for the endpoints in PUBLIC. It is
where the signed-in person's account (`g.person`: name, role, department,
read again at each request) is found; what they may see is decided where
the page reads evidence (context.py, by dock/access.py).

Signing in: the form carries a token tied to a cookie of its own (a CSRF
check before anyone is signed in; SameSite=Strict besides); failures slow
down and lock per name and per address (signin_guard.py); every attempt,
sign-out and ended session is a line of the dock's audit log
(`<dock>/audit.jsonl`, dock/audit.py), written before the answer. When the dock cannot record an
attempt, nobody signs in. After signing in the supervisor goes back to the
page they asked for, if it is one of this app's (safe_next.py). A
signed-in supervisor may switch the page's language for their session.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers.response import Response as BaseResponse

from link.locale import LANGUAGES
from sealing.recordings import utc_text as iso_text

from ...access import Act, Person, may, scope_of
from ...audit import AuditError, AuditLog
from ...texts import Msg, msg
from .accounts import name_or_none, person_of
from .clock import Clock
from .context import page_context, page_texts
from .errors import PageError
from .safe_next import local_next
from .sessions import Session, SessionStore, password_tag
from .signin_guard import Key, Lock, SigninGuard

KEY = "bodycam_auth"
SESSION_COOKIE = "bodycam_supervisor"
SIGNIN_COOKIE = "bodycam_signin"  # ties the sign-in form's token to this browser
PUBLIC = frozenset({"auth.login_form", "auth.login"})
FORM_EXPIRED = msg(
    "The form has expired or did not come from this page: reload the page and try again."
)
ROLE_NAMES: dict[str, Msg] = {
    "officer": msg("officer"),
    "head": msg("department head"),
    "leader": msg("leadership"),
    "legal": msg("legal and supervision"),
    "auditor": msg("auditor"),
    "admin": msg("administrator"),
}
# the languages a supervisor can switch to, each named in itself
LANGUAGE_NAMES = (("zh-CN", "中文"), ("en", "English"))

log = logging.getLogger("bodycam.compliance")

bp = Blueprint("auth", __name__)


@dataclass(frozen=True)
class AuthState:
    dock_dir: Path
    clock: Clock
    sessions: SessionStore
    guard: SigninGuard
    log: AuditLog
    secret: bytes  # signs the sign-in form's token; drawn at each start
    dummy_hash: str  # checked for an unknown name, so that it takes as long
    # one password check at a time, so that concurrent guesses cannot slip
    # past the count (a check is one scrypt, a fraction of a second)
    checking: threading.Lock


@dataclass(frozen=True)
class LockNotice:
    """A lock as the sign-in page words it."""

    scope: str  # "name" or "address"
    who: str
    until: str  # 2026-12-02 09:40:31 +08:00 (Asia/Shanghai)
    wait: str  # 14 min 58 s


def install(app: Flask, dock_dir: Path, clock: Clock) -> None:
    """Raises PageError when the kept sign-in locks cannot be read."""
    app.extensions[KEY] = AuthState(
        dock_dir=dock_dir,
        clock=clock,
        sessions=SessionStore(clock),
        guard=SigninGuard.load(dock_dir, clock),
        log=AuditLog(dock_dir),
        secret=secrets.token_bytes(32),
        dummy_hash=generate_password_hash(secrets.token_hex(16)),
        checking=threading.Lock(),
    )


def _state() -> AuthState:
    return cast(AuthState, current_app.extensions[KEY])


def signed_in() -> Session | None:
    """The session of this request, once require_sign_in has found it."""
    return cast(Session | None, g.get("session"))


def person() -> Person | None:
    """Who is signed in, as their account says now."""
    return cast(Person | None, g.get("person"))


def _account(name: str) -> tuple[Person, str] | None:
    try:
        return person_of(page_context().index, name)
    except PageError as exc:
        log.error("%s", exc)
        _unreadable(exc)


# -- every request -------------------------------------------------------------


@bp.before_app_request
def require_sign_in() -> BaseResponse | None:
    found = _session_of_request()
    if found is not None:
        g.session, g.person = found
        return None
    if request.routing_exception is not None or request.endpoint in PUBLIC:
        return None  # an unknown path, an untrusted Host: answered as that error
    nxt = None
    if request.method == "GET" and request.endpoint:
        nxt = url_for(request.endpoint, **(request.view_args or {}))  # names encoded again
    resp = redirect(url_for("auth.login_form", next=nxt))
    if SESSION_COOKIE in request.cookies:
        resp.delete_cookie(SESSION_COOKIE)
    return resp


def _session_of_request() -> tuple[Session, Person] | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    st = _state()
    session = st.sessions.find(token)
    if session is None:
        return None
    account = _account(session.user)
    stored = account[1] if account is not None else None
    if account is None or stored is None or not _same(password_tag(stored), session.password_tag):
        st.sessions.end(token)
        why = "removed" if stored is None else "password_changed"
        try:
            _record("session_ended", session.user, why=why)
        except (OSError, AuditError):
            log.exception("audit log")  # the session ends all the same
        return None
    return session, account[0]


@bp.app_context_processor
def signed_in_context() -> dict[str, Any]:
    session, who = signed_in(), person()
    return {
        "user": session.user if session else None,
        "csrf": session.csrf if session else "",
        "languages": LANGUAGE_NAMES,
        "role_label": page_texts().say(ROLE_NAMES[who.role]) if who else "",
        "sees_registers": who is not None and may(who, Act.SEE_REGISTERS),
        "sees_ledger": who is not None and scope_of(who.role, Act.SEE_LEDGER) is not None,
        "sees_files": who is not None and scope_of(who.role, Act.SEE_RECORDINGS) is not None,
        "spot_checks": who is not None and scope_of(who.role, Act.SPOT_CHECK) is not None,
    }


# -- signing in and out ------------------------------------------------------------


@bp.get("/login")
def login_form() -> BaseResponse:
    return _login_page(200, local_next(request.args.get("next"), current_app.url_map))


@bp.post("/login")
def login() -> BaseResponse:
    st = _state()
    nonce = request.cookies.get(SIGNIN_COOKIE, "")
    sent = request.form.get("csrf", "")
    if not nonce or not _same(sent, _form_token(nonce)):
        abort(400, description=FORM_EXPIRED)
    typed, password = request.form.get("name", ""), request.form.get("password", "")
    nxt = local_next(request.form.get("next"), current_app.url_map)
    name = name_or_none(typed)  # as stored: NFC, whatever keyboard typed it
    keys = [Key("name", name)] if name is not None else []
    keys.append(Key("address", _address()))  # after the name: a tie is told as the name's
    try:
        with st.checking:
            return _sign_in(st, keys, name, typed, password, nxt)
    except (OSError, AuditError) as exc:
        log.exception("sign-in record")
        abort(
            503,
            description=msg(
                "The dock cannot record sign-in attempts (%(error)s), so nobody can "
                "sign in until it can: the dock folder must be writable.",
                error=getattr(exc, "strerror", None) or str(exc),
            ),
        )


def _sign_in(
    st: AuthState, keys: list[Key], name: str | None, typed: str, password: str, nxt: str | None
) -> BaseResponse:
    lock = st.guard.lock_on(keys)
    if lock is not None:
        if _power_of_ten(lock.refused):  # a flood of refusals is a few lines, counted
            _record("locked", typed, lock=lock)
        return _login_page(429, nxt, lock=lock)
    account = _account(name) if name is not None else None
    stored = account[1] if account is not None else None
    matches = check_password_hash(stored or st.dummy_hash, password)
    if name is None or account is None or stored is None or not matches:
        lock = st.guard.failed(keys)
        _record("wrong_password", typed, lock=lock)
        return _login_page(401, nxt, error=msg("Wrong name or password."), lock=lock)
    st.guard.succeeded(keys)
    _record("signed_in", name, role=account[0].role)
    token, _ = st.sessions.start(name, password_tag(stored))
    log.info("%s %r signed in", account[0].role, name)
    resp = redirect(nxt or url_for("pages.overview"))
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict")
    return resp


@bp.post("/logout")
def logout() -> BaseResponse:
    session = require_form()
    token = request.cookies.get(SESSION_COOKIE, "")
    _state().sessions.end(token)
    try:
        _record("signed_out", session.user)
    except (OSError, AuditError):
        log.exception("audit log")  # signed out all the same
    resp = redirect(url_for("auth.login_form"))
    resp.delete_cookie(SESSION_COOKIE)
    return resp


@bp.post("/language")
def set_language() -> BaseResponse:
    """The page in another language for this session, then back to the page."""
    require_form()
    language = request.form.get("language", "")
    if language not in LANGUAGES:
        abort(400, description=msg("No such language: %(language)r.", language=language[:20]))
    _state().sessions.set_language(request.cookies.get(SESSION_COOKIE, ""), language)
    return redirect(
        local_next(request.form.get("next"), current_app.url_map) or url_for("pages.overview")
    )


# -- helpers -------------------------------------------------------------------------


def require_form() -> Session:
    """The session of a signed-in form post whose CSRF field is that
    session's; 400 (the form has expired) otherwise."""
    session = signed_in()
    if session is None or not _same(request.form.get("csrf", ""), session.csrf):
        abort(400, description=FORM_EXPIRED)
    return session


def _unreadable(exc: PageError) -> NoReturn:
    abort(
        503,
        description=msg(
            "The dock's list of supervisors cannot be read: %(error)s", error=exc.args[0]
        ),
    )


def _same(sent: str, want: str) -> bool:
    """In constant time, and for any text a browser sends (compare_digest
    refuses a str that is not ASCII: that was a 500)."""
    return hmac.compare_digest(sent.encode(), want.encode())


def _address() -> str:
    return request.remote_addr or "unknown"


def _form_token(nonce: str) -> str:
    return hmac.new(_state().secret, nonce.encode(), "sha256").hexdigest()


def _power_of_ten(n: int) -> bool:
    return n >= 1 and str(n).rstrip("0") == "1"


def _iso(wall: float) -> str:
    return iso_text(int(wall * 1e6), ms=True)


def _record(
    result: str, name: str, lock: Lock | None = None, why: str | None = None, role: str = ""
) -> None:
    """One sign-in line of the audit log; OSError or AuditError when it cannot be written."""
    st = _state()
    detail: dict[str, str | int] = {"at": _iso(st.clock.wall()), "address": _address()}
    if lock is not None:
        detail |= {"locked": lock.key.scope, "locked_until": _iso(lock.until_wall)}
        if lock.refused:
            detail["refused"] = lock.refused
    if why is not None:
        detail["why"] = why
    st.log.append(name[:64], role, "sign_in", "", result, detail)


def _notice(lock: Lock) -> LockNotice:
    texts = page_texts()
    left = math.ceil(lock.seconds_left(_state().clock))
    minutes, seconds = divmod(left, 60)
    if minutes:
        wait = texts.tr("%(minutes)s min %(seconds)s s", minutes=minutes, seconds=seconds)
    else:
        wait = texts.tr("%(seconds)s s", seconds=seconds)
    until = texts.time(int(lock.until_wall * 1e6))
    return LockNotice(lock.key.scope, lock.key.who, until, wait)


def _login_page(
    status: int, nxt: str | None, error: Msg | None = None, lock: Lock | None = None
) -> BaseResponse:
    nonce = request.cookies.get(SIGNIN_COOKIE, "")
    fresh = not 0 < len(nonce) <= 100
    if fresh:
        nonce = secrets.token_urlsafe(32)
    html = render_template(
        "login.html.j2",
        next=nxt,
        error=error,
        locked=_notice(lock) if lock is not None else None,
        csrf=_form_token(nonce),
    )
    resp = make_response(html, status)
    if fresh:
        resp.set_cookie(SIGNIN_COOKIE, nonce, httponly=True, samesite="Strict")
    if lock is not None:
        resp.headers["Retry-After"] = str(max(1, math.ceil(lock.seconds_left(_state().clock))))
    return resp
