"""Downloads: a unit's day and an officer's days as a printable PDF (the
page's own template, through WeasyPrint) and as CSV (one row per event and
per finding).

A CSV cell is chain text, and a spreadsheet runs a cell that starts with
`=`, `+`, `-` or `@` (or a tab or line break before one) as a formula: such a
cell gets a leading apostrophe (OWASP's advice), which makes a spreadsheet
read it as text (some show the apostrophe, and a program reading the CSV sees
it); every other cell is the chain's text unchanged. Headers and words are
the reader's language; each time is given twice, local (the zone named in
the header) and UTC (ISO 8601), so a program reading the CSV needs no zone."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Response, render_template

from sealing.recordings import utc_text

from ...texts import Texts
from .. import model
from .context import ledger_rows, officer_days, page_texts, unit_of
from .names import attachment
from .pages import officer_html, parse_day, unit_day_html

bp = Blueprint("exports", __name__)

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def cell(v: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula."""
    if isinstance(v, str) and v.startswith(FORMULA_STARTS):
        return "'" + v
    return v


def columns(t: Texts) -> list[str]:
    return [
        t.tr("Row"),
        t.tr("Unit"),
        t.tr("Officer"),
        t.tr("Time (%(zone)s)", zone=t.zone_name),
        t.tr("Time (UTC)"),
        t.tr("Record"),
        t.tr("Recording"),
        t.tr("Kind"),
        t.tr("State"),
        t.tr("What"),
        # the same in every language, for a spreadsheet's filters and scripts
        t.tr("Code"),
        t.tr("State code"),
    ]


def to_csv(events: Iterable[model.Event], findings: Iterable[model.Finding], t: Texts) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(columns(t))
    for e in events:
        rec = e.recording if e.recording is not None else ""
        row = [
            t.tr("event"),
            e.serial,
            e.officer,
            t.time_no_zone(e.at_us),
            utc_text(e.at_us),
            e.seq,
            rec,
            t.say(e.kind_label),
            t.say(e.state_label),
            t.say(e.text),
            e.kind,
            e.state,
        ]
        w.writerow([cell(v) for v in row])
    for f in findings:
        rec = f.recording if f.recording is not None else ""
        row = [
            t.tr("finding"),
            f.serial,
            f.officer,
            t.time_no_zone(f.at_us),
            utc_text(f.at_us),
            f.seq,
            rec,
            t.say(f.label),
            "",
            t.say(f.text),
            f.kind,
            "",
        ]
        w.writerow([cell(v) for v in row])
    return out.getvalue()


def pdf(html: str) -> bytes:
    import weasyprint  # loads slowly: only when a PDF is asked for

    return bytes(weasyprint.HTML(string=html).write_pdf())


def download(data: bytes, mimetype: str, stem: str, ext: str) -> Response:
    return Response(data, mimetype=mimetype, headers={"Content-Disposition": attachment(stem, ext)})


@bp.get("/unit/<segment:serial>/<day>/report.pdf")
def unit_day_pdf(serial: str, day: str) -> Response:
    shown, html = unit_day_html(serial, day, printable=True)
    return download(pdf(html), "application/pdf", f"{serial}_{shown.day}", ".pdf")


@bp.get("/ledger.pdf")
def ledger_pdf() -> Response:
    """The usage ledger printed: the page's table, in the page's fonts."""
    html = render_template("ledger.html.j2", rows=ledger_rows(), printable=True)
    return download(pdf(html), "application/pdf", "ledger", ".pdf")


@bp.get("/ledger.csv")
def ledger_csv() -> Response:
    """The usage ledger as S0 annex 1 has it: department, unit, officer, times."""
    t = page_texts()
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow([t.tr("Department"), t.tr("Unit"), t.tr("Officer"),
                t.tr("Taken (%(zone)s)", zone=t.zone_name), t.tr("Approved by"),
                t.tr("Returned (%(zone)s)", zone=t.zone_name)])  # fmt: skip
    for r in ledger_rows():
        back = t.time_no_zone(r["in_us"]) if r["in_us"] else ""
        w.writerow([cell(str(v)) for v in (r["department"], r["serial"], r["officer"],
                    t.time_no_zone(r["out_us"]), r["approver"], back)])  # fmt: skip
    return download(bom(out.getvalue()), "text/csv; charset=utf-8", "ledger", ".csv")


@bp.get("/unit/<segment:serial>/<day>/events.csv")
def unit_day_csv(serial: str, day: str) -> Response:
    d = parse_day(day)
    shown = model.unit_day(unit_of(serial, d), d)
    text = to_csv(shown.events, shown.findings, page_texts())
    return download(bom(text), "text/csv; charset=utf-8", f"{serial}_{d}", ".csv")


@bp.get("/officer/<segment:name>/report.pdf")
def officer_pdf(name: str) -> Response:
    html = officer_html(name, printable=True)
    return download(pdf(html), "application/pdf", name, ".pdf")


@bp.get("/officer/<segment:name>/events.csv")
def officer_csv(name: str) -> Response:
    days = officer_days(name)
    events, findings = [e for d in days for e in d.events], [f for d in days for f in d.findings]
    text = to_csv(events, findings, page_texts())
    return download(bom(text), "text/csv; charset=utf-8", name, ".csv")


def bom(text: str) -> bytes:
    """UTF-8 with a byte-order mark: the spreadsheets on Chinese Windows
    desks read a CSV without one as GBK, and names turn to mojibake."""
    return text.encode("utf-8-sig")
