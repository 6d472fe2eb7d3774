"""The pages a supervisor reads: the overview (units, officers, findings), a
unit's days, a unit's day (timeline, findings, recordings, events) and an
officer's days; the audit log for who may see the registers. The day and
officer pages are also rendered for print (the PDFs in exports.py use the
same templates). What each person sees is decided in context.py."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from flask import Blueprint, abort, g, render_template, request

from ...access import Act, Person, may
from ...audit import AuditError, key_fingerprint
from ...audit import read as read_audit
from ...texts import msg
from .. import model
from .context import (
    audit,
    dock_view,
    ledger_rows,
    officer_days,
    page_context,
    page_texts,
    refuse,
    unit_grant,
    unit_of,
    within,
)
from .timeline import officer_rows, timeline_svg, unit_day_rows

bp = Blueprint("pages", __name__)

DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_day(text: str) -> date:
    if not DAY_RE.fullmatch(text):
        abort(
            400,
            description=msg(
                "%(text)r is not a day: give it as YYYY-MM-DD (%(zone)s).",
                text=text[:40],
                zone=page_context().locale.timezone,
            ),
        )
    try:
        return date.fromisoformat(text)
    except ValueError:
        abort(400, description=msg("%(text)r is not a day of the calendar.", text=text))


def unit_day_html(serial: str, day: str, printable: bool = False) -> tuple[model.Day, str]:
    """A unit's day as a page (or its printable form) and what it shows."""
    d = parse_day(day)
    unit = unit_of(serial, d)
    shown = model.unit_day(unit, d)
    t = page_texts()
    title = t.tr(
        "%(serial)s, %(day)s (%(zone)s)", serial=serial, day=d.isoformat(), zone=t.zone_name
    )
    svg = timeline_svg(unit_day_rows(shown, t), title, t)
    html = render_template("day.html.j2", unit=unit, day=shown, svg=svg, printable=printable)
    return shown, html


def officer_html(name: str, printable: bool = False) -> str:
    days = officer_days(name)
    t = page_texts()
    title = t.tr("%(name)s: one bar per day (%(zone)s)", name=name, zone=t.zone_name)
    svg = timeline_svg(officer_rows(days, t), title, t)
    return render_template("officer.html.j2", officer=name, days=days, svg=svg, printable=printable)


@bp.get("/")
def overview() -> str:
    v = dock_view()
    units = list(v.units)
    people: list[dict[str, Any]] = []
    for name in model.officers(units):
        days = model.officer_days(units, name, page_context().locale)
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


@bp.get("/audit")
def audit_log() -> str:
    """The audit log and its verification: for who may see the registers."""
    who = g.get("person")
    if not isinstance(who, Person) or not may(who, Act.SEE_REGISTERS):
        refuse("the audit log")
    dock_dir = page_context().dock_dir
    entries, broken = read_audit(dock_dir)
    try:
        key = key_fingerprint(dock_dir)
    except AuditError:
        key = "-"
    audit("view", request.path)
    return render_template("audit.html.j2", entries=entries, broken=broken, key=key)


@bp.get("/ledger")
def ledger() -> str:
    return render_template("ledger.html.j2", rows=ledger_rows(), printable=False)


@bp.get("/unit/<segment:serial>")
def unit_page(serial: str) -> str:
    unit, found = unit_grant(serial)
    days = [model.unit_day(unit, d) for d in within(unit.days(), found)]
    # a recording across midnight is on two days: once here
    recordings = (
        list({r.start_seq: r for d in days for r in d.recordings}.values())
        if found
        else unit.recordings
    )
    return render_template("unit.html.j2", unit=unit, days=days, recordings=recordings)


@bp.get("/unit/<segment:serial>/<day>")
def unit_day(serial: str, day: str) -> str:
    return unit_day_html(serial, day)[1]


@bp.get("/officer/<segment:name>")
def officer(name: str) -> str:
    return officer_html(name)
