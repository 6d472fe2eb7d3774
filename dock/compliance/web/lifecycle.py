"""A recording's retention at the page (dock/retention.py has the rules):
its class raised with a reason, a hold placed (heads for their
department's, leadership and legal), a class lowered or a hold released
(only the approver dock.toml's [retention] names). Each change is a row of
the index and a line of the audit log; a refusal is both a 403 and a line."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, request, url_for
from werkzeug.wrappers.response import Response as BaseResponse

from ...access import Act, may
from ...index import INDEX_ERRORS
from ...retention import CLASSES, HOLDS, RANK, PolicyError, load_policy
from ...texts import msg
from .auth import require_form
from .context import (
    audit,
    current_person,
    index_failed,
    now_us,
    page_context,
    people_departments,
    read_units,
    refuse,
)

bp = Blueprint("lifecycle", __name__)


@bp.post("/unit/<segment:serial>/recording/<int:seq>/retention")
def change(serial: str, seq: int) -> BaseResponse:
    require_form()
    who = current_person()
    unit = next((u for u in read_units().units if u.serial == serial), None)
    rec = next((v for v in unit.recordings if v.start_seq == seq), None) if unit else None
    what = f"recording {seq} of unit {serial}"
    if rec is None:
        refuse(what)  # nothing is told of what does not exist
    form = request.form
    kind, value = form.get("change", ""), form.get("value", "")
    reason = " ".join(form.get("reason", "").split())
    if kind not in ("class", "hold", "release") or not (
        (kind == "class" and value in CLASSES) or (kind != "class" and value in HOLDS)
    ):
        abort(400, description=msg("No such retention change: %(change)s %(value)s.",
                                   change=kind[:20], value=value[:20]))  # fmt: skip
    if not reason or len(reason) > 200 or not reason.isprintable():
        abort(400, description=msg("A retention change needs a reason (at most 200 characters)."))
    try:
        policy = load_policy(page_context().dock_dir)
    except PolicyError as exc:
        abort(503, description=msg("The retention policy cannot be used: %(error)s",
                                   error=str(exc)))  # fmt: skip
    shorter = kind == "release" or (kind == "class" and RANK[value] < RANK[rec.retention])
    if kind == "release" and value not in rec.holds:
        abort(409, description=msg("%(what)s has no %(hold)s hold.", what=what, hold=value))
    allowed = (
        who.role == policy.approver
        if shorter
        else may(who, Act.KEEP_LONGER, rec.officer, people_departments().get(rec.officer))
    )
    if not allowed:
        audit(f"retention_{kind}", request.path, "refused", value=value, reason=reason)
        abort(403, description=msg("Your role does not allow you to change how long %(what)s "
                                   "is kept.", what=what))  # fmt: skip
    row = {"serial": serial, "recording": seq, "at_us": now_us(), "change": kind,
           "value": value, "by": who.name, "reason": reason,
           "approved_by": who.name if shorter else ""}  # fmt: skip
    audit(f"retention_{kind}", request.path, value=value, reason=reason)
    try:
        page_context().index.add_retention_change(row)
    except INDEX_ERRORS as exc:
        index_failed(exc)
    return redirect(url_for("playback.play_page", serial=serial, seq=seq))
