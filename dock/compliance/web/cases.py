"""Cases and the files by date at the page (S2 art. 10: records filed by
year, month and day, and case by case; dock/cases.py has the rules).

- /files, /files/YYYY, /files/YYYY/MM, /files/YYYY/MM/DD: every recording
  the reader may see, by its local start date (the dock's zone).
- /cases: the cases, and a form to open one (FILE_CASES roles);
  /case/<number>: its recordings the reader may see, and a form to file
  another (which places the case hold). Opening, filing and refusals are
  lines of the audit log."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, redirect, render_template, request, url_for
from werkzeug.wrappers.response import Response as BaseResponse

from ...access import Act, may, scope_of
from ...cases import Case, CaseRefused, case_name, case_number, hold_row
from ...index import INDEX_ERRORS
from ...texts import msg
from .. import model
from .auth import require_form
from .context import (
    audit,
    current_person,
    dock_view,
    index_failed,
    now_us,
    page_context,
    people_departments,
    read_units,
    refuse,
)

bp = Blueprint("cases", __name__)


def _visible() -> list[model.RecordingView]:
    """Every recording the signed-in person may see, oldest first."""
    recs = [v for u in dock_view().units for v in u.recordings]
    return sorted(recs, key=lambda v: (v.start_us, v.serial, v.start_seq))


def _ymd(v: model.RecordingView) -> tuple[int, int, int]:
    d = model.day_of(v.start_us, page_context().locale)
    return d.year, d.month, d.day


@bp.get("/files")
@bp.get("/files/<int:year>")
@bp.get("/files/<int:year>/<int:month>")
@bp.get("/files/<int:year>/<int:month>/<int:day>")
def files(year: int | None = None, month: int | None = None, day: int | None = None) -> str:
    """One level of the year / month / day folders, or a day's recordings."""
    if month is not None and not 1 <= month <= 12:
        abort(404, description=msg("There is no month %(month)s.", month=month))
    if day is not None:
        try:
            date(year or 0, month or 0, day)
        except ValueError:
            abort(404, description=msg("There is no day %(day)s in that month.", day=day))
    path = tuple(x for x in (year, month, day) if x is not None)
    recs = [v for v in _visible() if _ymd(v)[: len(path)] == path]
    audit("view", request.path)
    if day is not None:
        return render_template("files.html.j2", path=path, folders=[], recordings=recs)
    counts: dict[int, int] = {}
    for v in recs:
        key = _ymd(v)[len(path)]
        counts[key] = counts.get(key, 0) + 1
    return render_template(
        "files.html.j2", path=path, folders=sorted(counts.items()), recordings=[]
    )


def _case_rows() -> tuple[list[Case], dict[str, list[tuple[str, int]]]]:
    ctx = page_context()
    try:
        cases = [Case.from_row(r) for r in ctx.index.cases()]
        links = ctx.index.case_recordings()
    except INDEX_ERRORS as exc:
        index_failed(exc)
    filed: dict[str, list[tuple[str, int]]] = {}
    for r in links:
        filed.setdefault(r["number"], []).append((r["serial"], r["recording"]))
    return cases, filed


def _files_cases() -> bool:
    return scope_of(current_person().role, Act.FILE_CASES) is not None


@bp.get("/cases")
def cases_page() -> str:
    """The cases the reader files in, or whose recordings they may see."""
    if not _files_cases() and scope_of(current_person().role, Act.SEE_RECORDINGS) is None:
        refuse("the cases")
    cases, filed = _case_rows()
    seen = {(v.serial, v.start_seq) for v in _visible()}
    shown = [
        (c, sum(1 for k in filed.get(c.number, []) if k in seen))
        for c in cases
        if _files_cases() or any(k in seen for k in filed.get(c.number, []))
    ]
    audit("view", request.path)
    return render_template("cases.html.j2", cases=shown, may_open=_files_cases())


@bp.post("/cases")
def open_case() -> BaseResponse:
    require_form()
    who = current_person()
    if not _files_cases():
        refuse("opening a case")
    try:
        number = case_number(request.form.get("number", ""))
        name = case_name(request.form.get("name", ""))
    except CaseRefused as exc:
        abort(400, description=exc.args[0])
    row = {"number": number, "name": name, "opened_by": who.name, "opened_us": now_us()}
    try:
        new = page_context().index.add_case(row)
    except INDEX_ERRORS as exc:
        index_failed(exc)
    if not new:
        abort(409, description=msg("Case %(number)s exists already.", number=number))
    audit("case_open", number, name=name)
    return redirect(url_for("cases.case_page", number=number))


def _case(number: str) -> tuple[Case, list[tuple[str, int]]]:
    cases, filed = _case_rows()
    case = next((c for c in cases if c.number == number), None)
    if case is None:
        abort(404, description=msg("No case %(number)s on this dock.", number=number))
    return case, filed.get(number, [])


@bp.get("/case/<segment:number>")
def case_page(number: str) -> str:
    case, keys = _case(number)
    recs = [v for v in _visible() if (v.serial, v.start_seq) in set(keys)]
    if not recs and not _files_cases():
        refuse(f"case {number}")
    audit("view", request.path)
    hidden = len(keys) - len(recs)
    return render_template(
        "case.html.j2", case=case, recordings=recs, hidden=hidden, may_file=_files_cases()
    )


@bp.post("/cases/file")
def file_chosen() -> BaseResponse:
    """The recording page's form: the case is chosen in the form."""
    return file_recording(request.form.get("number", ""))


def cases_to_file_in(rec: model.RecordingView) -> list[Case]:
    """The cases the signed-in person may file `rec` in (none when they may not)."""
    dept = people_departments().get(rec.officer)
    if not may(current_person(), Act.FILE_CASES, rec.officer, dept):
        return []
    filed = {c.number for c in rec.cases}
    return [c for c in _case_rows()[0] if c.number not in filed]


@bp.post("/case/<segment:number>/file")
def file_recording(number: str) -> BaseResponse:
    """A recording filed in the case; the case hold comes with it."""
    require_form()
    who = current_person()
    case, _keys = _case(number)
    serial = request.form.get("serial", "").strip()
    try:
        seq = int(request.form.get("recording", ""))
    except ValueError:
        abort(400, description=msg("Give the recording's number (its start record)."))
    unit = next((u for u in read_units().units if u.serial == serial), None)
    rec = next((v for v in unit.recordings if v.start_seq == seq), None) if unit else None
    what = f"recording {seq} of unit {serial}"
    if rec is None:
        if not may(who, Act.SEE_RECORDINGS):
            refuse(what)  # nothing is told of what does not exist
        abort(404, description=msg("No recording %(seq)s of unit %(serial)s on this dock.",
                                   seq=seq, serial=serial[:40]))  # fmt: skip
    if not may(who, Act.FILE_CASES, rec.officer, people_departments().get(rec.officer)):
        audit("case_file", number, "refused", serial=serial, recording=seq)
        abort(403, description=msg("Your role does not allow you to file %(what)s in a case.",
                                   what=what))  # fmt: skip
    at = now_us()
    link = {"number": case.number, "serial": serial, "recording": seq, "by": who.name, "at_us": at}
    try:
        new = page_context().index.file_in_case(
            link, hold_row(case.number, serial, seq, who.name, at)
        )
    except INDEX_ERRORS as exc:
        index_failed(exc)
    if not new:
        abort(409, description=msg("%(what)s is filed in case %(number)s already.",
                                   what=what, number=case.number))  # fmt: skip
    audit("case_file", case.number, serial=serial, recording=seq)
    return redirect(url_for("cases.case_page", number=case.number))
