"""The page as an application and as the dock's two commands:

    bodycam-dock supervisor-add --dock-dir DIR --name NAME [--password-file F]
    bodycam-dock page --dock-dir DIR [--port 8080] [--host 127.0.0.1]

`create_app` builds the Flask app for one dock from the blueprints (auth,
pages, exports) and answers every error with a page of its own (no
traceback reaches a browser); `serve` runs it under waitress, on loopback
only. Every text goes through the dock's catalog (Jinja2's i18n extension,
in the reader's language: dock/compliance/web/context.py `page_texts`).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import ipaddress
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import waitress
from flask import Flask, render_template
from waitress import wasyncore
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers.response import Response as BaseResponse

from link.locale import LANGUAGES, Locale
from sealing.age import Identity

from ... import chain_codes, fonts, retention
from ...access import ROLES
from ...audit import AuditError, key_fingerprint
from ...evidence_key import KeyRefused, load_identity
from ...index import INDEX_ERRORS, Index, describe_error
from ...texts import CatalogMissing, Msg, Texts, load_texts, msg
from .. import model
from . import (
    access_requests,
    auth,
    cases,
    context,
    exports,
    lifecycle,
    pages,
    playback,
    spot_checks,
)
from .accounts import INDEX, MIN_PASSWORD, add_person, check_name, has_people
from .clock import Clock
from .context import page_texts
from .errors import PageError
from .names import SegmentConverter

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
LOOPBACK_NAMES = {"localhost": "127.0.0.1"}

log = logging.getLogger("bodycam.compliance")

# The title of each error page (werkzeug's names are English only)
HTTP_TITLES: dict[int, Msg] = {
    400: msg("Bad request"),
    401: msg("Not signed in"),
    403: msg("Forbidden"),
    404: msg("Not found"),
    405: msg("Not allowed here"),
    413: msg("Request too large"),
    429: msg("Too many attempts"),
    500: msg("Internal error"),
    503: msg("Unavailable"),
}
# What an error page says when werkzeug answered it (an unknown address, a
# foreign Host, a method no page takes), not the page itself
HTTP_SAID: dict[int, Msg] = {
    400: msg("The request was not one this page answers."),
    404: msg("There is no such page on this dock."),
    405: msg("This page does not take that kind of request."),
    413: msg("The request is larger than any form of this page."),
}


def create_app(
    dock_dir: Path,
    late_after_s: int = model.LATE_AFTER_S,
    clock: Clock | None = None,
    locale: Locale | None = None,
    identity: Identity | None = None,
) -> Flask:
    """The page for one dock. Its index must exist: the page never makes one.
    `clock`: what sessions and sign-in locks run on (the system's by default);
    `locale`: the dock's language and zone (default: dock.toml's);
    `identity`: the evidence key playback decrypts with (none: no playback)."""
    from ...dock_locale import dock_locale

    path = dock_dir / "dock.sqlite"
    if not path.is_file():
        raise PageError(
            msg(
                "%(folder)s has no index (%(file)s): nothing has been pulled there",
                folder=str(dock_dir),
                file=path.name,
            )
        )
    try:
        chosen = locale or dock_locale(dock_dir)
        texts = {lang: load_texts(Locale(lang, chosen.timezone)) for lang in LANGUAGES}
    except (ValueError, CatalogMissing) as exc:  # LocaleError is a ValueError
        raise PageError(str(exc)) from None
    try:
        index = Index.open(path, dock=None)  # dock=None: every dock's rows, and read-only
    except INDEX_ERRORS as exc:
        raise PageError(
            msg("index %(file)s: %(error)s", file=str(path), error=describe_error(exc))
        ) from None
    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=None)
    # chain text (reasons, names) is data, never markup: escape every template,
    # whatever its file name ends with (Flask's default escapes only *.html)
    app.jinja_options = {
        "autoescape": True,
        "undefined": jinja2.StrictUndefined,
        "extensions": ["jinja2.ext.i18n"],
    }
    env: Any = app.jinja_env  # the i18n extension adds install_gettext_callables
    env.install_gettext_callables(
        gettext=lambda s: page_texts().catalog.gettext(s),
        ngettext=lambda s, p, n: page_texts().catalog.ngettext(s, p, n),
        newstyle=True,  # %(name)s filled in by Jinja, escaped: chain text stays text
    )
    app.config.update(
        # a name that resolves here by DNS rebinding is refused: only loopback names
        TRUSTED_HOSTS=["127.0.0.1", "localhost", "::1", "[::1]"],
        MAX_CONTENT_LENGTH=16 * 1024,  # a login form, nothing bigger
    )
    app.jinja_env.filters.update(
        say=lambda v: page_texts().say(v),
        time=lambda us: page_texts().time(us),
        clock=lambda us: page_texts().clock(us),
        flag=lambda code: page_texts().say(chain_codes.flag(code)),
        verification=lambda state: page_texts().say(model.VERIFICATION_STATES.get(state, state)),
        retention_class=lambda c: page_texts().say(retention.CLASS_NAMES.get(c, c)),
        hold=lambda h: page_texts().say(retention.HOLD_NAMES.get(h, h)),
    )
    app.url_map.converters["segment"] = SegmentConverter  # before any rule uses it
    clock = clock or Clock()
    context.install(
        app, context.PageContext(dock_dir, index, late_after_s, chosen, texts, clock, identity)
    )
    auth.install(app, dock_dir, clock)
    blueprints = (auth.bp, pages.bp, exports.bp, access_requests.bp, playback.bp, lifecycle.bp,
                  cases.bp, spot_checks.bp)  # fmt: skip
    for bp in blueprints:
        app.register_blueprint(bp)

    @app.context_processor
    def common() -> dict[str, Any]:
        t = page_texts()
        return {
            "printable": False,
            "findings_kinds": model.FINDINGS,
            "dock_dir": dock_dir.name,
            "lang": t.language,
            "zone": t.zone_name,
            "font_css": fonts.css_stack(),
        }

    @app.after_request
    def headers(resp: BaseResponse) -> BaseResponse:
        # no script anywhere; the SVG and the CSS are inline
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            "media-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"  # evidence facts stay off the disk cache
        return resp

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[str, int]:
        code = exc.code or 500
        said: object = exc.description
        if not isinstance(said, Msg):  # werkzeug's own words: ours instead
            said = HTTP_SAID.get(code, said or "")
        return _error_page(code, HTTP_TITLES.get(code, exc.name), said), code

    @app.errorhandler(500)
    def crash(_exc: Exception) -> tuple[str, int]:
        # Flask has logged the exception with its traceback; the browser gets none
        return _error_page(
            500, HTTP_TITLES[500], msg("Something went wrong on the dock; it was logged.")
        ), 500

    return app


def _error_page(code: int, title: object, message: object) -> str:
    try:
        t = page_texts()
        return render_template(
            "error.html.j2", code=code, title=t.say(title), message=t.say(message)
        )
    except Exception:  # the error page itself failed: plain words, still no traceback
        log.exception("error page")
        return f"{code} {title}"


def loopback(host: str) -> str:
    """The address to bind, only if it is a loopback one."""
    addr = LOOPBACK_NAMES.get(host.lower(), host)
    try:
        ok = ipaddress.ip_address(addr).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise PageError(
            msg(
                "--host %(host)s: the compliance page is served on this machine only; "
                "give a loopback address (127.0.0.1, ::1 or localhost)",
                host=host,
            )
        )
    return addr


@dataclass(frozen=True)
class Listening:
    """The page bound to its address under waitress; it answers once run."""

    url: str
    server: Any
    sockets: dict[int, Any]  # waitress's socket map: the listener, its connections

    def run(self) -> None:
        """Answer until stop() or Ctrl-C."""
        try:
            self.server.run()
        except KeyboardInterrupt:
            pass
        finally:
            wasyncore.close_all(self.sockets)
            self.server.task_dispatcher.shutdown()

    def stop(self) -> None:
        """From any thread: the loop closes every socket, and run() returns."""
        with contextlib.suppress(OSError):  # the loop has ended and closed its trigger
            self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.sockets))


def listen(app: Flask, host: str, port: int) -> Listening:
    sockets: dict[int, Any] = {}
    try:
        server: Any = waitress.create_server(
            app,
            map=sockets,
            host=host,
            port=port,
            threads=6,  # two of them may be streaming (context.MAX_STREAMS)
            ident="bodycam-dock",
            # select() refuses descriptors above 1023 and ends the loop: poll() has no limit
            asyncore_use_poll=True,
            # a streamed playback waits for its viewer once 2 MiB wait to be sent, and
            # what waits stays in memory: waitress spills to a temporary file past
            # outbuf_overflow, and plaintext is never written to disk
            outbuf_high_watermark=2 * 1024 * 1024,
            outbuf_overflow=16 * 1024 * 1024,
        )
    except OSError as exc:
        raise PageError(
            msg(
                "cannot listen on %(host)s:%(port)s: %(error)s",
                host=host,
                port=port,
                error=exc.strerror or str(exc),
            )
        ) from None
    shown = f"[{host}]" if ":" in host else host
    return Listening(f"http://{shown}:{server.effective_port}/", server, sockets)


def serve(app: Flask, host: str, port: int, ready: Callable[[str], None]) -> None:
    page = listen(app, host, port)
    ready(page.url)
    page.run()


def _page(args: argparse.Namespace, texts: Texts) -> int:
    host = loopback(args.host)  # before anything is read
    if not 0 <= args.port <= 65535:
        raise PageError(msg("--port %(port)s: want 0 to 65535", port=args.port))
    if not args.dock_dir.is_dir():
        raise PageError(msg("%(folder)s is not a folder", folder=str(args.dock_dir)))
    if not has_people(args.dock_dir):
        add = (f"bodycam-dock user-add --dock-dir {args.dock_dir} --name NAME "
               f"--role {'|'.join(ROLES)} --department DEPT")  # fmt: skip
        raise PageError(
            msg(
                "no supervisors or other people in %(file)s: add one with %(command)s",
                file=str(args.dock_dir / INDEX),
                command=add,
            )
        )
    for package in fonts.missing():  # the page still serves; names may show as boxes
        warning = texts.tr(
            "warning: the font package %(package)s is not installed: "
            "Chinese text and names may show as empty boxes (apt-get install %(package)s)",
            package=package,
        )
        print(f"dock: {warning}", file=sys.stderr)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # WeasyPrint says a line for each SVG property it ignores, some hundred a
    # PDF: they would bury the page's own lines
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    app = create_app(args.dock_dir, locale=texts.locale, identity=_identity(args, texts))
    serve(
        app,
        host,
        args.port,
        lambda url: print(
            texts.tr("compliance page on %(url)s (read-only; Ctrl-C stops)", url=url), flush=True
        ),
    )
    return 0


def _identity(args: argparse.Namespace, texts: Texts) -> Identity | None:
    """--identity, or the agency folder's evidence key, unlocked when it is
    passphrase-protected (dock/evidence_key.py); None: no playback."""
    path = args.identity or (args.agency / "evidence.key" if args.agency else None)
    if path is None:
        return None
    return load_identity(path, args.passphrase_file, texts)


def _user_add(args: argparse.Namespace, texts: Texts) -> int:
    """`user-add` (and `supervisor-add`: the role `legal`, no department)."""
    name = check_name(args.name)  # before asking for a password
    role = getattr(args, "role", "legal")
    department = getattr(args, "department", "") or ""
    if args.password_file:
        password = args.password_file.read_text().rstrip("\n")
    else:
        password = getpass.getpass(texts.tr("password for %(name)s: ", name=name))
        if len(password) >= MIN_PASSWORD and getpass.getpass(texts.tr("again: ")) != password:
            raise PageError(msg("the two passwords differ"))
    if not password:
        raise PageError(msg("the password is empty"))
    new = add_person(args.dock_dir, name, role, department, password)
    where = str(args.dock_dir / INDEX)
    if new:
        print(texts.tr("%(name)s added as %(role)s in %(file)s", name=name, role=role, file=where))
    else:
        print(texts.tr("%(name)s is now %(role)s, with the password given, in %(file)s",
                       name=name, role=role, file=where))  # fmt: skip
    try:
        print(texts.tr("audit key %(fingerprint)s (write it down: audit-verify shows it)",
                       fingerprint=key_fingerprint(args.dock_dir)))  # fmt: skip
    except AuditError as exc:
        raise PageError(str(exc)) from None
    return 0


def command(args: argparse.Namespace, texts: Texts) -> int:
    """`bodycam-dock supervisor-add` and `bodycam-dock page`: exit 2 with one line on error."""
    try:
        if args.cmd in ("supervisor-add", "user-add"):
            return _user_add(args, texts)
        return _page(args, texts)
    except PageError as exc:
        print(f"dock: {texts.say(exc)}", file=sys.stderr)
    except KeyRefused as exc:  # a wrong passphrase: exit 1
        print(f"dock: {texts.say(exc)}", file=sys.stderr)
        return exc.code
    except (OSError, UnicodeDecodeError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
    except (EOFError, KeyboardInterrupt):
        print(f"dock: {texts.tr('no password given')}", file=sys.stderr)
    return 2
