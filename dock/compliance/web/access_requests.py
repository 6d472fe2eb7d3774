"""Access requests at the page (dock/requests.py has the rules): a person
files one, the approver the rules name approves or refuses it, and the
register (S0 annex 2: 调阅、复制音像资料登记表) lists every request with its
decision and each use made of it, as a page, a PDF and a CSV.

Every filing, decision and refusal is a line of the audit log; a use of an
approved request (a view, a playback, a court copy) is recorded where it
happens, with the request's id, and the register reads those lines back."""

from __future__ import annotations

import csv
import io
import secrets
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from werkzeug.wrappers.response import Response as BaseResponse

from ...access import Act, may
from ...audit import read as read_audit
from ...index import INDEX_ERRORS
from ...requests import (
    ACT_NAMES,
    ACTS,
    BODIES,
    BODY_NAMES,
    DAY_US,
    STATE_NAMES,
    Request,
    RequestRefused,
    checked,
    may_decide,
)
from ...retention import PolicyError, load_policy
from ...texts import msg
from .. import model
from .auth import require_form
from .context import (
    audit,
    current_person,
    index_failed,
    now_us,
    owners_of,
    page_context,
    page_texts,
    people_departments,
    read_units,
    refuse,
    request_rows,
)
from .exports import bom, cell, download, pdf
from .pages import parse_day

bp = Blueprint("requests", __name__)


def owner_departments(req: Request) -> set[str | None]:
    """The departments of the officers whose recordings `req` names."""
    people = people_departments()
    if req.officer:
        return {people.get(req.officer)}
    units = [u for u in read_units().units if u.serial == req.serial]
    return {people.get(o) for u in units for o in owners_of(u)}


def _approver() -> str:
    """The role that approves disposals (dock.toml [retention] approver)."""
    try:
        return load_policy(page_context().dock_dir).approver
    except PolicyError as exc:
        abort(503, description=msg("The retention policy cannot be used: %(error)s",
                                   error=str(exc)))  # fmt: skip


def _form_request(filer: Any) -> Request:
    f = request.form
    first, last = parse_day(f.get("from", "")), parse_day(f.get("to", ""))
    loc = page_context().locale
    body = f.get("body", "")
    internal = body == "internal"
    return Request(
        id=secrets.token_hex(6),
        filed_us=now_us(),
        filed_by=filer.name,
        # staff ask for themselves; an outside body's person is registered by the filer
        requester=filer.name if internal else f.get("requester", ""),
        organisation=(filer.department or "-") if internal else f.get("organisation", ""),
        body=body,
        act=f.get("act", ""),
        serial=f.get("serial", ""),
        officer=f.get("officer", ""),
        from_us=model.day_bounds(first, loc)[0],
        to_us=model.day_bounds(last, loc)[0] + DAY_US,
        matter=f.get("matter", ""),
        reason=f.get("reason", ""),
    )


@bp.get("/requests")
def requests_page() -> str:
    who = current_person()
    mine, to_decide = [], []
    for row in request_rows():
        req = Request.from_row(row)
        if who.name in (req.filed_by, req.requester):
            mine.append(req)
        elif req.state == "pending" and may_decide(who, req, owner_departments(req), _approver()):
            to_decide.append(req)
    return render_template(
        "requests.html.j2",
        mine=mine,
        to_decide=to_decide,
        acts=[(a, ACT_NAMES[a]) for a in ACTS],
        bodies=[(b, BODY_NAMES[b]) for b in BODIES],
        act_names=ACT_NAMES,
        state_names=STATE_NAMES,
        me=who,
    )


@bp.post("/requests")
def file_request() -> BaseResponse:
    require_form()
    who = current_person()
    try:
        req = checked(_form_request(who))
    except RequestRefused as exc:
        audit("request", "-", "refused", why=str(exc.args[0]))
        abort(400, description=exc.args[0])
    try:
        page_context().index.add_access_request(dict(req.__dict__))
    except INDEX_ERRORS as exc:
        index_failed(exc)
    audit("request", req.id, asked=req.act, serial=req.serial, officer=req.officer)
    return redirect(url_for("requests.requests_page"))


@bp.post("/requests/<rid>/decide")
def decide(rid: str) -> BaseResponse:
    require_form()
    who = current_person()
    row = next((r for r in request_rows() if r["id"] == rid), None)
    if row is None:
        abort(404, description=msg("No request %(id)s.", id=rid[:20]))
    req = Request.from_row(row)
    decision = request.form.get("decision", "")
    if decision not in ("approved", "refused"):
        abort(400, description=msg("A decision is approved or refused."))
    if not may_decide(who, req, owner_departments(req), _approver()):
        refuse(f"the decision on request {rid}")
    note = " ".join(request.form.get("note", "").split())[:200]
    try:
        done = page_context().index.decide_access_request(rid, decision, who.name, now_us(), note)
    except INDEX_ERRORS as exc:
        index_failed(exc)
    if not done:  # decided by someone else meanwhile
        abort(409, description=msg("Request %(id)s has been decided already.", id=rid))
    audit("approve" if decision == "approved" else "refuse", rid, request=rid)
    return redirect(url_for("requests.requests_page"))


# -- the register ------------------------------------------------------------


def register_rows() -> list[dict[str, Any]]:
    """Every request, with the uses made of it (from the audit log), for who
    may see the registers; 403 (recorded) for anyone else."""
    who = current_person()
    if not may(who, Act.SEE_REGISTERS):
        refuse("the access register")
    entries, _broken = read_audit(page_context().dock_dir)
    uses: dict[str, list[Any]] = {}
    for e in entries:
        rid = e.detail.get("request")
        if isinstance(rid, str) and e.result == "ok" and e.act not in ("approve", "refuse"):
            uses.setdefault(rid, []).append(e)
    audit("view" if request.endpoint == "requests.register" else "download", request.path)
    return [{"req": Request.from_row(r), "uses": uses.get(r["id"], [])} for r in request_rows()]


def _span(req: Request) -> str:
    t = page_texts()
    return f"{t.time_no_zone(req.from_us)} – {t.time_no_zone(req.to_us)}"


@bp.get("/register")
def register() -> str:
    return render_template(
        "register.html.j2", rows=register_rows(), printable=False, act_names=ACT_NAMES,
        state_names=STATE_NAMES, span=_span,
    )  # fmt: skip


@bp.get("/register.pdf")
def register_pdf() -> Response:
    html = render_template(
        "register.html.j2", rows=register_rows(), printable=True, act_names=ACT_NAMES,
        state_names=STATE_NAMES, span=_span,
    )  # fmt: skip
    return download(pdf(html), "application/pdf", "register", ".pdf")


@bp.get("/register.csv")
def register_csv() -> Response:
    t = page_texts()
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow([
        t.tr("No."), t.tr("Requester"), t.tr("Organisation"), t.tr("Matter"), t.tr("Reason"),
        t.tr("Act"), t.tr("Unit"), t.tr("Officer"), t.tr("Time span (%(zone)s)", zone=t.zone_name),
        t.tr("Filed (%(zone)s)", zone=t.zone_name), t.tr("Handled by"), t.tr("State"),
        t.tr("Approved by"), t.tr("Decided (%(zone)s)", zone=t.zone_name),
        t.tr("Used (%(zone)s)", zone=t.zone_name), t.tr("Request"), t.tr("Act code"),
    ])  # fmt: skip
    for n, r in enumerate(register_rows(), 1):
        q = r["req"]
        used = "; ".join(f"{t.time_no_zone(e.at_us)} {e.act}" for e in r["uses"])
        decided = t.time_no_zone(q.decided_us) if q.decided_us else ""
        w.writerow([cell(str(v)) for v in (
            n, q.requester, q.organisation, q.matter, q.reason, t.say(ACT_NAMES[q.act]),
            q.serial, q.officer, _span(q), t.time_no_zone(q.filed_us), q.filed_by,
            t.say(STATE_NAMES[q.state]), q.approver, decided, used, q.id, q.act,
        )])  # fmt: skip
    return download(bom(out.getvalue()), "text/csv; charset=utf-8", "register", ".csv")
