"""The page as an application and as the dock's two commands:

    bodycam-dock supervisor-add --dock-dir DIR --name NAME [--password-file F]
    bodycam-dock page --dock-dir DIR [--port 8080] [--host 127.0.0.1]

`create_app` builds the Flask app for one dock from the blueprints (auth,
pages, exports) and answers every error with a page of its own (no
traceback reaches a browser); `serve` runs it under waitress, on loopback
only.
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

from ...index import INDEX_ERRORS, Index, describe_error
from .. import model
from . import auth, context, exports, pages
from .accounts import MIN_PASSWORD, SUPERVISORS, add_supervisor, check_name, load_supervisors
from .clock import Clock
from .errors import PageError
from .names import SegmentConverter

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
LOOPBACK_NAMES = {"localhost": "127.0.0.1"}

log = logging.getLogger("bodycam.compliance")


def create_app(
    dock_dir: Path, late_after_s: int = model.LATE_AFTER_S, clock: Clock | None = None
) -> Flask:
    """The page for one dock. Its index must exist: the page never makes one.
    `clock`: what sessions and sign-in locks run on (the system's by default)."""
    path = dock_dir / "dock.sqlite"
    if not path.is_file():
        raise PageError(f"{dock_dir} has no index ({path.name}): nothing has been pulled there")
    try:
        index = Index.open(path, dock=None)  # dock=None: every dock's rows, and read-only
    except INDEX_ERRORS as exc:
        raise PageError(f"index {path}: {describe_error(exc)}") from None
    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=None)
    # chain text (reasons, names) is data, never markup: escape every template,
    # whatever its file name ends with (Flask's default escapes only *.html)
    app.jinja_options = {"autoescape": True, "undefined": jinja2.StrictUndefined}
    app.config.update(
        # a name that resolves here by DNS rebinding is refused: only loopback names
        TRUSTED_HOSTS=["127.0.0.1", "localhost", "::1", "[::1]"],
        MAX_CONTENT_LENGTH=16 * 1024,  # a login form, nothing bigger
    )
    app.jinja_env.filters["hms"] = model.short_time
    app.jinja_env.filters["iso"] = model.iso
    app.url_map.converters["segment"] = SegmentConverter  # before any rule uses it
    context.install(app, context.PageContext(dock_dir, index, late_after_s))
    auth.install(app, dock_dir, clock or Clock())
    for bp in (auth.bp, pages.bp, exports.bp):
        app.register_blueprint(bp)

    @app.context_processor
    def common() -> dict[str, Any]:
        return {"printable": False, "findings_kinds": model.FINDINGS, "dock_dir": dock_dir.name}

    @app.after_request
    def headers(resp: BaseResponse) -> BaseResponse:
        # no script anywhere; the SVG and the CSS are inline
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"  # evidence facts stay off the disk cache
        return resp

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[str, int]:
        code = exc.code or 500
        return _error_page(code, exc.name, exc.description or ""), code

    @app.errorhandler(500)
    def crash(_exc: Exception) -> tuple[str, int]:
        # Flask has logged the exception with its traceback; the browser gets none
        return _error_page(
            500, "Internal error", "Something went wrong on the dock; it was logged."
        ), 500

    return app


def _error_page(code: int, title: str, message: str) -> str:
    try:
        return render_template("error.html.j2", code=code, title=title, message=message)
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
            f"--host {host}: the compliance page is served on this machine only; "
            "give a loopback address (127.0.0.1, ::1 or localhost)"
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
            threads=4,
            ident="bodycam-dock",
            # select() refuses descriptors above 1023 and ends the loop: poll() has no limit
            asyncore_use_poll=True,
        )
    except OSError as exc:
        raise PageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    shown = f"[{host}]" if ":" in host else host
    return Listening(f"http://{shown}:{server.effective_port}/", server, sockets)


def serve(app: Flask, host: str, port: int, ready: Callable[[str], None]) -> None:
    page = listen(app, host, port)
    ready(page.url)
    page.run()


def _page(args: argparse.Namespace) -> int:
    host = loopback(args.host)  # before anything is read
    if not 0 <= args.port <= 65535:
        raise PageError(f"--port {args.port}: want 0 to 65535")
    if not args.dock_dir.is_dir():
        raise PageError(f"{args.dock_dir} is not a folder")
    if not load_supervisors(args.dock_dir):
        raise PageError(
            f"no supervisors in {args.dock_dir / SUPERVISORS}: add one with "
            f"bodycam-dock supervisor-add --dock-dir {args.dock_dir} --name NAME"
        )
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # WeasyPrint says a line for each SVG property it ignores, some hundred a
    # PDF: they would bury the page's own lines
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    app = create_app(args.dock_dir)
    serve(
        app,
        host,
        args.port,
        lambda url: print(f"compliance page on {url} (read-only; Ctrl-C stops)", flush=True),
    )
    return 0


def _supervisor_add(args: argparse.Namespace) -> int:
    check_name(args.name)  # before asking for a password
    if args.password_file:
        password = args.password_file.read_text().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if len(password) >= MIN_PASSWORD and getpass.getpass("again: ") != password:
            raise PageError("the two passwords differ")
    if not password:
        raise PageError("the password is empty")
    new = add_supervisor(args.dock_dir, args.name, password)
    print(
        f"supervisor {args.name} {'added' if new else 'given a new password'} "
        f"in {args.dock_dir / SUPERVISORS}"
    )
    return 0


def command(args: argparse.Namespace) -> int:
    """`bodycam-dock supervisor-add` and `bodycam-dock page`: exit 2 with one line on error."""
    try:
        return _supervisor_add(args) if args.cmd == "supervisor-add" else _page(args)
    except PageError as exc:
        print(f"dock: {exc}", file=sys.stderr)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
    except (EOFError, KeyboardInterrupt):
        print("dock: no password given", file=sys.stderr)
    return 2
