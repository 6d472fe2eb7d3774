"""Spot checks at the page (dock/spot_checks.py has the rules; S0 art.
28-29): a supervisor draws a sample over a period, a unit or an officer,
plays each sampled recording in the page and judges it; the judgements are
the check ledger (page, PDF, CSV).

- /checks: the draws, and the form for a new one. The population is what
  the drawer may see; it and the seed are kept, so the page shows whether
  the stored sample is what the seed draws from it.
- /check/<id>: the sample; a recording is judged only after the judge has
  played it since the draw (the audit log says so), once.
- /checks/ledger(.pdf|.csv): every judgement the reader may see.
Draws, judgements and refusals are lines of the audit log."""

from __future__ import annotations

import csv
import io
import secrets
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from werkzeug.wrappers.response import Response as BaseResponse

from ...access import Act, may, scope_of
from ...audit import read as read_audit
from ...index import INDEX_ERRORS
from ...spot_checks import (
    ITEM_NAMES,
    ITEMS,
    VERDICT_NAMES,
    CheckRefused,
    checked_seed,
    checked_size,
    draw,
    from_json,
    judgement,
    to_json,
)
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
    page_texts,
    people_departments,
    read_units,
    refuse,
)
from .exports import bom, cell, download, pdf
from .pages import parse_day

bp = Blueprint("checks", __name__)


def _checker() -> None:
    if scope_of(current_person().role, Act.SPOT_CHECK) is None:
        refuse("the spot checks")


def _rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ctx = page_context()
    try:
        return ctx.index.spot_checks(), ctx.index.spot_judgements()
    except INDEX_ERRORS as exc:
        index_failed(exc)


def _recordings() -> dict[tuple[str, int], model.RecordingView]:
    """The recordings the signed-in person may see, by (serial, recording)."""
    return {(v.serial, v.start_seq): v for u in dock_view().units for v in u.recordings}


@bp.get("/checks")
def checks_page() -> str:
    _checker()
    checks, judged = _rows()
    done: dict[str, int] = {}
    for j in judged:
        done[j["check_id"]] = done.get(j["check_id"], 0) + 1
    audit("view", request.path)
    rows = [(c, len(from_json(c["sample"])), done.get(c["id"], 0)) for c in checks]
    return render_template("checks.html.j2", checks=rows)


@bp.post("/checks")
def draw_check() -> BaseResponse:
    require_form()
    _checker()
    who = current_person()
    f = request.form
    first, last = parse_day(f.get("from", "")), parse_day(f.get("to", ""))
    if last < first:
        abort(400, description=msg("The period ends before it starts."))
    serial, officer = f.get("serial", "").strip()[:64], f.get("officer", "").strip()[:64]
    try:
        size, seed = checked_size(f.get("size", "")), checked_seed(f.get("seed", ""))
    except CheckRefused as exc:
        abort(400, description=exc.args[0])
    loc = page_context().locale
    people = people_departments()
    population = [
        key for key, v in _recordings().items()
        if first <= model.day_of(v.start_us, loc) <= last
        and (not serial or v.serial == serial) and (not officer or v.officer == officer)
        and v.disposed is None and v.segments
        and may(who, Act.SPOT_CHECK, v.officer, people.get(v.officer))
    ]  # fmt: skip
    if not population:
        abort(409, description=msg("No recording you may check matches: nothing to draw from."))
    sample = draw(population, size, seed)
    cid = f"C{now_us() // 1_000_000:x}-{secrets.token_hex(3)}"
    row = {
        "id": cid, "drawn_by": who.name, "drawn_us": now_us(), "first_day": first.isoformat(),
        "last_day": last.isoformat(), "serial": serial, "officer": officer, "size": size,
        "seed": seed, "population": to_json(sorted(population)), "sample": to_json(sample),
    }  # fmt: skip
    try:
        page_context().index.add_spot_check(row)
    except INDEX_ERRORS as exc:
        index_failed(exc)
    audit("spot_check_draw", cid, seed=seed, population=len(population), sample=len(sample))
    return redirect(url_for("checks.check_page", cid=cid))


def _check(cid: str) -> dict[str, Any]:
    checks, _ = _rows()
    row = next((c for c in checks if c["id"] == cid), None)
    if row is None:
        abort(404, description=msg("No spot check %(id)s.", id=cid[:40]))
    return row


@bp.get("/check/<segment:cid>")
def check_page(cid: str) -> str:
    _checker()
    row = _check(cid)
    _, judged = _rows()
    sample = from_json(row["sample"])
    reproduces = draw(from_json(row["population"]), row["size"], row["seed"]) == sample
    seen = _recordings()
    items = [
        {"key": k, "rec": seen.get(k),
         "judged": next((j for j in judged if j["check_id"] == cid
                         and (j["serial"], j["recording"]) == k), None)}
        for k in sample
    ]  # fmt: skip
    audit("view", request.path)
    return render_template(
        "check.html.j2", check=row, items=items, reproduces=reproduces,
        population=len(from_json(row["population"])), item_keys=ITEMS, item_names=ITEM_NAMES,
        verdict_names=VERDICT_NAMES,
    )  # fmt: skip


def _played_since_draw(cid: str, who: str, serial: str, seq: int) -> bool:
    """The judge's own playback of the recording, after the draw's line."""
    entries, _broken = read_audit(page_context().dock_dir)
    drawn = next((e.seq for e in entries if e.act == "spot_check_draw" and e.target == cid), None)
    if drawn is None:
        return False
    video = f"/unit/{serial}/recording/{seq}/video.mp4"
    return any(
        e.seq > drawn and e.who == who and e.act == "play" and e.result == "ok"
        and e.target == video
        for e in entries
    )  # fmt: skip


@bp.post("/check/<segment:cid>/judge")
def judge(cid: str) -> BaseResponse:
    require_form()
    _checker()
    who = current_person()
    row = _check(cid)
    serial = request.form.get("serial", "")
    try:
        seq = int(request.form.get("recording", ""))
    except ValueError:
        abort(400, description=msg("Give the recording's number (its start record)."))
    if (serial, seq) not in from_json(row["sample"]):
        abort(400, description=msg("Recording %(seq)s of unit %(serial)s is not in this sample.",
                                   seq=seq, serial=serial[:40]))  # fmt: skip
    rec = _recordings().get((serial, seq))
    if rec is None or not may(
        who, Act.SPOT_CHECK, rec.officer, people_departments().get(rec.officer)
    ):
        audit("spot_check_judge", cid, "refused", serial=serial, recording=seq)
        refuse(f"recording {seq} of unit {serial}")
    try:
        j = judgement(dict(request.form))
    except CheckRefused as exc:
        abort(400, description=exc.args[0])
    if not _played_since_draw(cid, who.name, serial, seq):
        abort(409, description=msg("Play recording %(seq)s of unit %(serial)s before judging it: "
                                   "a spot check judges what was seen.", seq=seq,
                                   serial=serial))  # fmt: skip
    out = {"check_id": cid, "serial": serial, "recording": seq, "by": who.name,
           "at_us": now_us(), **j.verdicts, "remark": j.remark}  # fmt: skip
    try:
        new = page_context().index.add_judgement(out)
    except INDEX_ERRORS as exc:
        index_failed(exc)
    if not new:
        abort(409, description=msg("Recording %(seq)s of unit %(serial)s has been judged in this "
                                   "check already.", seq=seq, serial=serial))  # fmt: skip
    audit("spot_check_judge", cid, serial=serial, recording=seq,
          passed="yes" if j.passed else "no")  # fmt: skip
    return redirect(url_for("checks.check_page", cid=cid))


# -- the check ledger ---------------------------------------------------------


def ledger_rows() -> list[dict[str, Any]]:
    """Every judgement the reader may see: checkers within their scope,
    who sees the registers all (performance review reads them)."""
    who = current_person()
    registers = may(who, Act.SEE_REGISTERS)
    if scope_of(who.role, Act.SPOT_CHECK) is None and not registers:
        refuse("the check ledger")
    checks, judged = _rows()
    by_id = {c["id"]: c for c in checks}
    people = people_departments()
    recs = {(v.serial, v.start_seq): v for u in read_units().units for v in u.recordings}
    out = []
    for j in judged:
        rec = recs.get((j["serial"], j["recording"]))
        officer = rec.officer if rec else ""
        if not registers and not may(who, Act.SPOT_CHECK, officer, people.get(officer)):
            continue
        out.append({"j": j, "check": by_id.get(j["check_id"], {}), "rec": rec})
    audit("view" if request.endpoint == "checks.ledger" else "download", request.path)
    return out


@bp.get("/checks/ledger")
def ledger() -> str:
    return render_template("check_ledger.html.j2", rows=ledger_rows(), printable=False,
                           item_keys=ITEMS, item_names=ITEM_NAMES,
                           verdict_names=VERDICT_NAMES)  # fmt: skip


@bp.get("/checks/ledger.pdf")
def ledger_pdf() -> Response:
    html = render_template("check_ledger.html.j2", rows=ledger_rows(), printable=True,
                           item_keys=ITEMS, item_names=ITEM_NAMES,
                           verdict_names=VERDICT_NAMES)  # fmt: skip
    return download(pdf(html), "application/pdf", "check-ledger", ".pdf")


@bp.get("/checks/ledger.csv")
def ledger_csv() -> Response:
    t = page_texts()
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow([
        t.tr("Check"), t.tr("Drawn by"), t.tr("Drawn (%(zone)s)", zone=t.zone_name), t.tr("Seed"),
        t.tr("Unit"), t.tr("Recording"), t.tr("Officer"),
        t.tr("Recorded from (%(zone)s)", zone=t.zone_name),
        *[t.say(ITEM_NAMES[i]) for i in ITEMS], t.tr("Remark"), t.tr("Judged by"),
        t.tr("Judged (%(zone)s)", zone=t.zone_name), *[f"{i} (code)" for i in ITEMS],
    ])  # fmt: skip
    for r in ledger_rows():
        j, c, rec = r["j"], r["check"], r["rec"]
        w.writerow([cell(str(v)) for v in (
            j["check_id"], c.get("drawn_by", ""),
            t.time_no_zone(c["drawn_us"]) if c else "", c.get("seed", ""), j["serial"],
            j["recording"], rec.officer if rec else "",
            t.time_no_zone(rec.start_us) if rec else "",
            *[t.say(VERDICT_NAMES[j[i]]) for i in ITEMS], j["remark"], j["by"],
            t.time_no_zone(j["at_us"]), *[j[i] for i in ITEMS],
        )])  # fmt: skip
    return download(bom(out.getvalue()), "text/csv; charset=utf-8", "check-ledger", ".csv")
