"""The supervisors' compliance page (R22), served by the dock on loopback only.

    python tools/dock.py supervisor-add --dock-dir DIR --name NAME [--password-file F]
    python tools/dock.py page --dock-dir DIR [--port 8080] [--host 127.0.0.1]

Read-only: it reads the dock's index and chain copies (tools/compliance.py)
and writes nothing there. Every page needs a supervisor's login; the
supervisors are `<dock>/supervisors.json` (name -> werkzeug password hash),
made by `supervisor-add`, read again at each request so a removed name is
signed out. Sessions are signed with a secret drawn at each start (a restart
signs everyone out); the cookie is HttpOnly and SameSite=Strict. The only
POSTs are sign in and sign out, each with a CSRF token. Pages: the overview
(units, officers, findings), a unit's days, a unit's day (timeline picture,
findings, recordings, events) and an officer's days, each day also as a
printable PDF (WeasyPrint, from the same template) and CSV. Times are UTC.

Flask renders the Jinja2 templates in dock/compliance/templates/; the
timeline is an SVG drawn by matplotlib on the server (no script runs in the
browser); waitress serves it.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import hmac
import io
import ipaddress
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jinja2
from flask import Flask, Response, abort, redirect, render_template, request, session, url_for
from markupsafe import Markup
from matplotlib import rc_context
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator
from werkzeug.exceptions import HTTPException
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers.response import Response as BaseResponse

from sealing.files import fsync_dir

from ..index import INDEX_ERRORS, Index, describe_error
from . import model

TEMPLATES = Path(__file__).resolve().parent / "templates"
SUPERVISORS = "supervisors.json"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 12
SESSION_HOURS = 8
DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
LOOPBACK_NAMES = {"localhost": "127.0.0.1"}

log = logging.getLogger("bodycam.compliance")


class PageError(Exception):
    """A command that must stop; the message says why."""


# -- supervisors -----------------------------------------------------------------


def load_supervisors(dock_dir: Path) -> dict[str, str]:
    """name -> password hash; an absent file is no supervisors."""
    path = dock_dir / SUPERVISORS
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PageError(f"{path}: unreadable: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise PageError(f"{path}: not a JSON object of name -> password hash")
    return data


def add_supervisor(dock_dir: Path, name: str, password: str) -> bool:
    """Add a supervisor, or set a known one's password. True when new."""
    if not dock_dir.is_dir():
        raise PageError(f"{dock_dir} is not a folder")
    if not NAME_RE.fullmatch(name):
        raise PageError(
            f"name {name!r}: want 1-64 of letters, digits and . _ @ -, starting with a "
            "letter or digit"
        )
    if len(password) < MIN_PASSWORD:
        raise PageError(f"the password must have at least {MIN_PASSWORD} characters")
    known = load_supervisors(dock_dir)
    new = name not in known
    known[name] = generate_password_hash(password)  # werkzeug's default: scrypt, salted
    _write_private(dock_dir / SUPERVISORS, json.dumps(known, indent=1, sort_keys=True) + "\n")
    return new


def _write_private(path: Path, text: str) -> None:
    """Readable by the dock's user only from the first byte on (the hashes are
    salted, but nobody else needs them), replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


# -- the timeline picture ----------------------------------------------------------

SPAN_STYLE = {  # kind -> (legend text, colour, hatch)
    "recording": ("recording", "#2e7d32", ""),
    "prerecord": ("pre-record", "#a5d6a7", ""),
    "paused": ("paused (nothing recorded)", "#bdbdbd", ""),
    "gap": ("gap, unexplained", "#d32f2f", "///"),
}


@dataclass(frozen=True)
class MarkerStyle:
    label: str
    marker: str
    colour: str
    size: float = 8.0
    hollow: bool = False


MARKERS = {
    "note_given": MarkerStyle("resume, spoken note given", "^", "#1565c0"),
    "note_missing": MarkerStyle("resume, spoken note MISSING", "X", "#d32f2f", 11.0),
    "note_pending": MarkerStyle("resume, note not judged yet", "^", "#1565c0", hollow=True),
    "mark": MarkerStyle("evidence mark", "*", "#f9a825", 12.0),
    "fault": MarkerStyle("fault or power loss", "s", "#212121"),
    "clock": MarkerStyle("clock change", "D", "#6a1b9a", 6.0),
    "stop_unit": MarkerStyle("stopped: battery or storage", "v", "#ef6c00", 10.0),
    "stop": MarkerStyle("stopped", "|", "#212121", 16.0),
}


def marker_of(e: model.Event) -> str | None:
    """Which marker an event gets in the picture (None: only in the table)."""
    if e.kind in ("resume", "note"):
        return {"given": "note_given", "MISSING": "note_missing"}.get(e.state, "note_pending")
    if e.kind == "stop":
        return "stop_unit" if e.state in model.STOP_CAUSES_FLAGGED else "stop"
    return e.kind if e.kind in ("mark", "fault", "clock") else None


@dataclass(frozen=True)
class Row:
    label: str
    origin_us: int  # 00:00 UTC of the row's day: x is hours since then
    spans: tuple[model.Span, ...]
    events: tuple[model.Event, ...]


_plot_lock = threading.Lock()  # rc_context is process-wide state


def _hours(us: int, origin: int) -> float:
    return (us - origin) / 3.6e9


def _clock_label(hours: float, _pos: Any = None) -> str:
    s = int(round(hours * 3600))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def timeline_svg(rows: Sequence[Row], title: str) -> Markup | None:
    """The picture: one row per recording (or per day), bars for what was
    recorded, markers for what happened; None when there is nothing to draw."""
    if not rows:
        return None
    xs = [_hours(t, r.origin_us) for r in rows for s in r.spans for t in (s.start_us, s.end_us)]
    xs += [_hours(e.at_us, r.origin_us) for r in rows for e in r.events if marker_of(e)]
    if not xs:
        return None
    lo, hi = min(xs), max(xs)
    pad = max((hi - lo) * 0.04, 30 / 3600)
    with _plot_lock, rc_context({"svg.fonttype": "none", "svg.hashsalt": "bodycam"}):
        fig = Figure(figsize=(10, 1.6 + 0.45 * len(rows)), layout="constrained")
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        for y, row in enumerate(rows):
            _draw_row(ax, y, row)
        ax.set_yticks(range(len(rows)), [r.label for r in rows], fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top
        ax.set_xlim(lo - pad, hi + pad)
        ax.xaxis.set_major_locator(MaxNLocator(8))
        ax.xaxis.set_major_formatter(FuncFormatter(_clock_label))
        ax.set_xlabel("time of day (UTC)", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", color="#eeeeee")
        ax.set_axisbelow(True)  # the grid behind the bars, not across them
        ax.set_title(title, fontsize=10)
        fig.legend(handles=_legend(), loc="outside lower center", ncol=4, fontsize=7, frameon=False)
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    return Markup(svg[svg.index("<svg") :])  # matplotlib escaped every text it holds


def _draw_row(ax: Any, y: int, row: Row) -> None:
    for s in row.spans:
        label, colour, hatch = SPAN_STYLE[s.kind]
        x0, x1 = _hours(s.start_us, row.origin_us), _hours(s.end_us, row.origin_us)
        height = 0.5 if s.kind == "prerecord" else 0.6
        ax.barh(
            y,
            max(x1 - x0, 1 / 3600),
            left=x0,
            height=height,
            color=colour,
            hatch=hatch,
            edgecolor="#7f0000" if hatch else colour,
            linewidth=0.5,
        )
    for e in row.events:
        key = marker_of(e)
        if key is None:
            continue
        m = MARKERS[key]
        x = _hours(e.at_us, row.origin_us)
        ax.plot(
            [x],
            [y],
            marker=m.marker,
            markersize=m.size,
            color=m.colour,
            markerfacecolor="white" if m.hollow else m.colour,
            linestyle="none",
            zorder=3,
        )
        if key == "note_missing":
            ax.annotate(
                "note MISSING",
                (x, y),
                xytext=(0, 12),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color=m.colour,
                fontweight="bold",
            )


def _legend() -> list[Any]:
    handles: list[Any] = [
        Patch(facecolor=colour, edgecolor="#7f0000" if hatch else colour, hatch=hatch, label=label)
        for label, colour, hatch in SPAN_STYLE.values()
    ]
    handles += [
        Line2D(
            [],
            [],
            marker=m.marker,
            color=m.colour,
            linestyle="none",
            markersize=7,
            markerfacecolor="white" if m.hollow else m.colour,
            label=m.label,
        )
        for m in MARKERS.values()
    ]
    return handles


def unit_day_rows(day: model.Day) -> list[Row]:
    """One row per recording of the day, and one for what happened while the
    unit was not recording (clock changes, faults)."""
    origin = model.day_bounds(day.day)[0]
    rows = [
        Row(
            f"rec {v.start_seq} ({model.short_time(v.start_us)})",
            origin,
            tuple(s for s in day.spans if s.recording == v.start_seq),
            tuple(e for e in day.events if e.recording == v.start_seq),
        )
        for v in day.recordings
    ]
    idle = tuple(e for e in day.events if e.recording is None and marker_of(e))
    if idle:
        rows.append(Row("not recording", origin, (), idle))
    return rows


def officer_rows(days: Iterable[model.Day]) -> list[Row]:
    """One bar per day, every unit the officer used."""
    return [
        Row(d.day.isoformat(), model.day_bounds(d.day)[0], d.spans, d.events)
        for d in days
        if d.spans or any(marker_of(e) for e in d.events)
    ]


# -- CSV -----------------------------------------------------------------------------

CSV_COLUMNS = ["row", "unit", "officer", "time_utc", "record", "recording", "kind", "state", "what"]


def _cell(v: Any) -> Any:
    """Text a spreadsheet would run as a formula is quoted."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def to_csv(events: Iterable[model.Event], findings: Iterable[model.Finding]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for e in events:
        w.writerow(
            [
                _cell(v)
                for v in (
                    "event",
                    e.serial,
                    e.officer,
                    model.iso(e.at_us),
                    e.seq,
                    e.recording if e.recording is not None else "",
                    e.kind,
                    e.state,
                    e.text,
                )
            ]
        )
    for f in findings:
        w.writerow(
            [
                _cell(v)
                for v in (
                    "finding",
                    f.serial,
                    f.officer,
                    model.iso(f.at_us),
                    f.seq,
                    f.recording if f.recording is not None else "",
                    f.kind,
                    f.label,
                    f.text,
                )
            ]
        )
    return out.getvalue()


def _safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80]


# -- the application ----------------------------------------------------------------


def create_app(dock_dir: Path, late_after_s: int = model.LATE_AFTER_S) -> Flask:
    """The page for one dock. Its index must exist: the page never makes one."""
    path = dock_dir / "dock.sqlite"
    if not path.is_file():
        raise PageError(f"{dock_dir} has no index ({path.name}): nothing has been pulled there")
    try:
        index = Index.open(path, dock=None)  # dock=None: every dock's rows, and read-only
    except INDEX_ERRORS as exc:
        raise PageError(f"index {path}: {describe_error(exc)}") from None
    app = Flask(__name__, template_folder=str(TEMPLATES))
    # chain text (reasons, names) is data, never markup: escape every template,
    # whatever its file name ends with (Flask's default escapes only *.html)
    app.jinja_options = {"autoescape": True, "undefined": jinja2.StrictUndefined}
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32),  # drawn at each start: a restart signs out
        SESSION_COOKIE_NAME="bodycam_supervisor",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        # plain HTTP on the loopback interface: there is no TLS a Secure cookie could ask for
        SESSION_COOKIE_SECURE=False,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        # a name that resolves here by DNS rebinding is refused: only loopback names
        TRUSTED_HOSTS=["127.0.0.1", "localhost", "::1", "[::1]"],
        MAX_CONTENT_LENGTH=16 * 1024,  # a login form, nothing bigger
    )
    dummy = generate_password_hash(secrets.token_hex(16))  # unknown names take as long
    app.jinja_env.filters["hms"] = model.short_time
    app.jinja_env.filters["iso"] = model.iso

    def view() -> model.DockView:
        try:
            return model.read_dock(dock_dir, index, late_after_s)
        except INDEX_ERRORS as exc:
            abort(503, description=f"The dock's index cannot be read: {describe_error(exc)}")

    def unit_of(serial: str) -> model.UnitCompliance:
        v = view()
        unit = next((u for u in v.units if u.serial == serial), None)
        if unit is None:
            why = dict(v.unreadable).get(serial)
            abort(404, description=f"No unit {serial} on this dock{f' ({why})' if why else ''}.")
        return unit

    def officer_units(name: str) -> tuple[list[model.UnitCompliance], list[model.Day]]:
        units = list(view().units)
        if name not in model.officers(units):
            abort(404, description=f"No officer {name} recorded on this dock's units.")
        return units, model.officer_days(units, name)

    # -- sign in / out ---------------------------------------------------------

    def signed_in() -> str | None:
        user, at = session.get("user"), session.get("at", 0)
        if not isinstance(user, str) or time.time() - at > SESSION_HOURS * 3600:
            return None
        try:
            if user not in load_supervisors(dock_dir):
                return None  # removed since: signed out
        except PageError:
            log.exception("supervisors file")
            return None
        return user

    @app.before_request
    def require_login() -> BaseResponse | None:
        if request.routing_exception is not None:
            return None  # an untrusted Host, an unknown path: answered as that error
        if request.endpoint in ("login_form", "login"):
            return None
        if signed_in() is None:
            session.pop("user", None)
            nxt = request.path if request.method == "GET" else None
            return redirect(url_for("login_form", next=nxt))
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

    @app.context_processor
    def common() -> dict[str, Any]:
        return {
            "user": session.get("user"),
            "csrf": csrf_token(),
            "printable": False,
            "findings_kinds": model.FINDINGS,
            "dock_dir": dock_dir.name,
        }

    @app.get("/login")
    def login_form() -> str:
        return render_template(
            "login.html.j2", next=_safe_next(request.args.get("next")), error=None
        )

    @app.post("/login")
    def login() -> BaseResponse | tuple[str, int]:
        check_csrf()
        name, password = request.form.get("name", ""), request.form.get("password", "")
        try:
            known = load_supervisors(dock_dir)
        except PageError:
            log.exception("supervisors file")
            abort(500)
        stored = known.get(name)
        ok = check_password_hash(stored or dummy, password) and stored is not None
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
        return redirect(nxt or url_for("overview"))

    @app.post("/logout")
    def logout() -> BaseResponse:
        check_csrf()
        session.clear()
        return redirect(url_for("login_form"))

    # -- pages -------------------------------------------------------------------

    @app.get("/")
    def overview() -> str:
        v = view()
        units = list(v.units)
        people = []
        for name in model.officers(units):
            days = model.officer_days(units, name)
            people.append(
                {
                    "name": name,
                    "units": sorted({r.serial for d in days for r in d.recordings}),
                    "days": days,
                    "findings": [f for d in days for f in d.findings],
                }
            )
        return render_template(
            "overview.html.j2", units=units, unreadable=v.unreadable, officers=people
        )

    @app.get("/unit/<serial>")
    def unit_page(serial: str) -> str:
        unit = unit_of(serial)
        days = [model.unit_day(unit, d) for d in unit.days()]
        return render_template("unit.html.j2", unit=unit, days=days)

    def day_page(
        serial: str, day: str, printable: bool = False
    ) -> tuple[model.UnitCompliance, model.Day, str]:
        d = _parse_day(day)
        unit = unit_of(serial)
        shown = model.unit_day(unit, d)
        svg = timeline_svg(unit_day_rows(shown), f"{serial}, {d.isoformat()} (UTC)")
        html = render_template("day.html.j2", unit=unit, day=shown, svg=svg, printable=printable)
        return unit, shown, html

    @app.get("/unit/<serial>/<day>")
    def unit_day(serial: str, day: str) -> str:
        return day_page(serial, day)[2]

    @app.get("/unit/<serial>/<day>/report.pdf")
    def unit_day_pdf(serial: str, day: str) -> Response:
        _, shown, html = day_page(serial, day, printable=True)
        return _download(_pdf(html), "application/pdf", f"{serial}_{shown.day}.pdf")

    @app.get("/unit/<serial>/<day>/events.csv")
    def unit_day_csv(serial: str, day: str) -> Response:
        d = _parse_day(day)
        shown = model.unit_day(unit_of(serial), d)
        return _download(
            to_csv(shown.events, shown.findings).encode(), "text/csv", f"{serial}_{d}.csv"
        )

    def officer_page(name: str, printable: bool = False) -> tuple[list[model.Day], str]:
        _, days = officer_units(name)
        svg = timeline_svg(officer_rows(days), f"{name}: one bar per day (UTC)")
        html = render_template(
            "officer.html.j2", officer=name, days=days, svg=svg, printable=printable
        )
        return days, html

    @app.get("/officer/<name>")
    def officer(name: str) -> str:
        return officer_page(name)[1]

    @app.get("/officer/<name>/report.pdf")
    def officer_pdf(name: str) -> Response:
        html = officer_page(name, printable=True)[1]
        return _download(_pdf(html), "application/pdf", f"{_safe_filename(name)}.pdf")

    @app.get("/officer/<name>/events.csv")
    def officer_csv(name: str) -> Response:
        _, days = officer_units(name)
        text = to_csv([e for d in days for e in d.events], [f for d in days for f in d.findings])
        return _download(text.encode(), "text/csv", f"{_safe_filename(name)}.csv")

    # -- answers -------------------------------------------------------------------

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


def _parse_day(text: str) -> date:
    if not DAY_RE.fullmatch(text):
        abort(400, description=f"{text!r} is not a day: give it as YYYY-MM-DD (UTC).")
    try:
        return date.fromisoformat(text)
    except ValueError:
        abort(400, description=f"{text!r} is not a day of the calendar.")


def _safe_next(nxt: str | None) -> str | None:
    """Only a path on this site: never another host after signing in."""
    if nxt and nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt:
        return nxt
    return None


def _pdf(html: str) -> bytes:
    import weasyprint  # loads slowly: only when a PDF is asked for

    return bytes(weasyprint.HTML(string=html).write_pdf())


def _download(data: bytes, mimetype: str, name: str) -> Response:
    return Response(
        data, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


# -- commands (tools/dock.py main) ----------------------------------------------------


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


def serve(app: Flask, host: str, port: int, ready: Callable[[str], None]) -> None:
    import waitress

    try:
        server: Any = waitress.create_server(
            app, host=host, port=port, threads=4, ident="bodycam-dock"
        )
    except OSError as exc:
        raise PageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    shown = f"[{host}]" if ":" in host else host
    ready(f"http://{shown}:{server.effective_port}/")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def _page(args: argparse.Namespace) -> int:
    host = loopback(args.host)  # before anything is read
    if not 0 <= args.port <= 65535:
        raise PageError(f"--port {args.port}: want 0 to 65535")
    if not args.dock_dir.is_dir():
        raise PageError(f"{args.dock_dir} is not a folder")
    if not load_supervisors(args.dock_dir):
        raise PageError(
            f"no supervisors in {args.dock_dir / SUPERVISORS}: add one with "
            f"dock.py supervisor-add --dock-dir {args.dock_dir} --name NAME"
        )
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    app = create_app(args.dock_dir)
    serve(
        app,
        host,
        args.port,
        lambda url: print(f"compliance page on {url} (read-only; Ctrl-C stops)", flush=True),
    )
    return 0


def _supervisor_add(args: argparse.Namespace) -> int:
    if not NAME_RE.fullmatch(args.name):  # before asking for a password
        raise PageError(f"name {args.name!r}: want 1-64 of letters, digits and . _ @ -")
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
    """`dock.py supervisor-add` and `dock.py page`: exit 2 with one line on error."""
    try:
        return _supervisor_add(args) if args.cmd == "supervisor-add" else _page(args)
    except PageError as exc:
        print(f"dock: {exc}", file=sys.stderr)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"dock: {exc}", file=sys.stderr)
    except (EOFError, KeyboardInterrupt):
        print("dock: no password given", file=sys.stderr)
    return 2
