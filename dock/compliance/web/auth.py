"""Signing in and out. Every page needs a supervisor signed in; the only
POSTs are sign in and sign out, each with a CSRF token. Sessions are signed
with a secret drawn at each start (a restart signs everyone out); the cookie
is HttpOnly and SameSite=Strict."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers.response import Response as BaseResponse

from .accounts import load_supervisors
from .errors import PageError

SESSION_HOURS = 8
KEY = "bodycam_auth"

log = logging.getLogger("bodycam.compliance")

bp = Blueprint("auth", __name__)


@dataclass(frozen=True)
class AuthState:
    dock_dir: Path
    dummy_hash: str  # checked against for an unknown name: it takes as long


def install(app: Flask, dock_dir: Path) -> None:
    app.extensions[KEY] = AuthState(dock_dir, generate_password_hash(secrets.token_hex(16)))


def _state() -> AuthState:
    return cast(AuthState, current_app.extensions[KEY])


def signed_in() -> str | None:
    user, at = session.get("user"), session.get("at", 0)
    if not isinstance(user, str) or time.time() - at > SESSION_HOURS * 3600:
        return None
    try:
        if user not in load_supervisors(_state().dock_dir):
            return None  # removed since: signed out
    except PageError:
        log.exception("supervisors file")
        return None
    return user


@bp.before_app_request
def require_login() -> BaseResponse | None:
    if request.routing_exception is not None:
        return None  # an untrusted Host, an unknown path: answered as that error
    if request.endpoint in ("auth.login_form", "auth.login"):
        return None
    if signed_in() is None:
        session.pop("user", None)
        nxt = request.path if request.method == "GET" else None
        return redirect(url_for("auth.login_form", next=nxt))
    return None


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def check_csrf() -> None:
    sent, want = request.form.get("csrf", ""), session.get("csrf", "")
    if not sent or not want or not hmac.compare_digest(str(sent), str(want)):
        abort(
            400,
            description="The form has expired or did not come from this page: "
            "reload the page and try again.",
        )


@bp.app_context_processor
def signed_in_context() -> dict[str, Any]:
    return {"user": session.get("user"), "csrf": csrf_token()}


@bp.get("/login")
def login_form() -> str:
    return render_template("login.html.j2", next=_safe_next(request.args.get("next")), error=None)


@bp.post("/login")
def login() -> BaseResponse | tuple[str, int]:
    check_csrf()
    name, password = request.form.get("name", ""), request.form.get("password", "")
    try:
        known = load_supervisors(_state().dock_dir)
    except PageError:
        log.exception("supervisors file")
        abort(500)
    stored = known.get(name)
    ok = check_password_hash(stored or _state().dummy_hash, password) and stored is not None
    if not ok:
        log.warning("failed supervisor sign-in as %r from %s", name[:64], request.remote_addr)
        page = render_template(
            "login.html.j2",
            next=_safe_next(request.form.get("next")),
            error="Wrong name or password.",
        )
        return page, 401
    nxt = _safe_next(request.form.get("next"))
    session.clear()
    session.permanent = True
    session.update(user=name, at=int(time.time()), csrf=secrets.token_urlsafe(32))
    log.info("supervisor %r signed in", name)
    return redirect(nxt or url_for("pages.overview"))


@bp.post("/logout")
def logout() -> BaseResponse:
    check_csrf()
    session.clear()
    return redirect(url_for("auth.login_form"))


def _safe_next(nxt: str | None) -> str | None:
    """Only a path on this site: never another host after signing in."""
    if nxt and nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt:
        return nxt
    return None
