"""What one app serves: its dock, the thresholds it judges by, and the
languages it speaks. Held by the app (app.extensions), never by a module, so
two apps in one process (the tests make several) share nothing.

Every page and download reads evidence through `dock_view`, `unit_of` and
`officer_days` here, and they show only what the signed-in person's role
allows (dock/access.py): a unit or officer outside it answers 403 and the
refusal is a line of the audit log, as is every view and download."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, NoReturn, cast

from flask import Flask, abort, current_app, g, request

from link.locale import Locale
from sealing.age import Identity

from ...access import Act, Person, may, scope_of
from ...audit import AuditError, AuditLog
from ...index import INDEX_ERRORS, Index, describe_error
from ...requests import Request, covers, direct
from ...retention import PolicyError
from ...texts import Texts, msg
from ...verified_copies import VerifiedCopies
from .. import model
from .clock import Clock

KEY = "bodycam_page"
MAX_STREAMS = 2  # encoders one page runs at once: two cores play two in real time


@dataclass(frozen=True)
class PageContext:
    dock_dir: Path
    index: Index
    late_after_s: int
    locale: Locale  # the dock's: its zone makes the days, its language is the default
    texts: dict[str, Texts] = field(default_factory=dict)  # language -> texts, the dock's zone
    clock: Clock = field(default_factory=Clock)  # what approvals expire by
    identity: Identity | None = None  # the evidence key: playback decrypts with it
    # playbacks and downloads streaming at once (each an encoder): at most MAX_STREAMS
    streams: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_STREAMS)
    )
    verified: VerifiedCopies = field(default_factory=VerifiedCopies)  # copies playback verified


def install(app: Flask, ctx: PageContext) -> None:
    app.extensions[KEY] = ctx


def page_context() -> PageContext:
    return cast(PageContext, current_app.extensions[KEY])


def page_texts() -> Texts:
    """The reader's language: the one their session chose, else the dock's."""
    ctx = page_context()
    session = g.get("session")
    chosen = getattr(session, "language", None)
    return ctx.texts[chosen if chosen in ctx.texts else ctx.locale.language]


def index_failed(exc: Exception) -> NoReturn:
    abort(503, description=msg("The dock's index cannot be read: %(error)s",
                               error=describe_error(exc)))  # fmt: skip


def current_person() -> Person:
    who = g.get("person")
    if not isinstance(who, Person):
        abort(403)  # only signed-in requests get here (auth.require_sign_in)
    return who


def people_departments() -> dict[str, str]:
    ctx = page_context()
    try:
        return {r["name"]: r["department"] for r in ctx.index.people()}
    except INDEX_ERRORS as exc:
        abort(503, description=msg("The accounts cannot be read: %(error)s",
                                   error=describe_error(exc)))  # fmt: skip


def may_see_officer(who: Person, officer: str, departments: dict[str, str]) -> bool:
    return may(who, Act.SEE_RECORDINGS, officer, departments.get(officer))


def may_see_unit(who: Person, unit: model.UnitCompliance, departments: dict[str, str]) -> bool:
    """A unit is shown to whoever may see the recordings of its officer (the
    chain's last) or of an officer of any of its recordings."""
    owners = {unit.officer} | {v.officer for v in unit.recordings}
    return any(may_see_officer(who, o, departments) for o in owners)


def audit(act: str, target: str, result: str = "ok", **detail: str | int) -> None:
    """One line of the audit log for what this request does; 503 (the
    action not done) when it cannot be written."""
    who = g.get("person")
    name, role = (who.name, who.role) if isinstance(who, Person) else ("", "")
    try:
        AuditLog(page_context().dock_dir).append(name, role, act, target, result, detail)
    except (OSError, AuditError) as exc:
        abort(503, description=msg(
            "The dock cannot record who sees what (%(error)s), so nothing is shown "
            "until it can: the dock folder must be writable.", error=str(exc)))  # fmt: skip


def _act() -> str:
    return "download" if (request.endpoint or "").startswith("exports.") else "view"


def refuse(target: str) -> NoReturn:
    audit(_act(), request.path, "refused", why=f"role: {target}")
    abort(403, description=msg("Your role does not allow you to see %(what)s.", what=target))


def ledger_rows() -> list[dict[str, Any]]:
    """The usage ledger's rows the signed-in person may see; 403 (recorded)
    for a role that sees none of it; the view or download recorded."""
    who = current_person()
    if scope_of(who.role, Act.SEE_LEDGER) is None:
        refuse("the usage ledger")
    try:
        rows = page_context().index.ledger()
    except INDEX_ERRORS as exc:
        index_failed(exc)
    audit(_act(), request.path)
    return [r for r in rows if may(who, Act.SEE_LEDGER, r["officer"], r["department"])]


def read_units() -> model.DockView:
    """Every unit the index names, read now; 503 when the index cannot be read."""
    ctx = page_context()
    try:
        return model.read_dock(ctx.dock_dir, ctx.index, ctx.late_after_s, ctx.locale)
    except INDEX_ERRORS as exc:
        index_failed(exc)
    except PolicyError as exc:
        abort(503, description=msg("The retention policy cannot be used: %(error)s",
                                   error=str(exc)))  # fmt: skip


def _cut(unit: model.UnitCompliance, who: Person, people: dict[str, str]) -> model.UnitCompliance:
    """A unit handed between officers, as this person may see it: only the
    recordings (and events, findings) of the officers they may see."""
    if all(may_see_officer(who, o, people) for o in owners_of(unit)):
        return unit
    return model.seen_by(unit, lambda o: may_see_officer(who, o, people))


def dock_view() -> model.DockView:
    """Every unit the index names that the signed-in person may see."""
    who, departments = current_person(), people_departments()
    view = read_units()
    units = tuple(
        _cut(u, who, departments) for u in view.units if may_see_unit(who, u, departments)
    )
    # a unit whose chain cannot be read has no officer to judge by: leader and legal only
    unreadable = view.unreadable if may(who, Act.SEE_RECORDINGS, None, None) else ()
    return model.DockView(units, unreadable)


def now_us() -> int:
    return int(page_context().clock.wall() * 1e6)


def request_rows() -> list[dict[str, Any]]:
    try:
        return page_context().index.access_requests()
    except INDEX_ERRORS as exc:
        index_failed(exc)


def grants(who: Person, act: str, serial: str, owners: set[str], start_us: int,
           end_us: int) -> list[Request]:  # fmt: skip
    """The approved requests that let `who` do `act` on the recordings of
    `owners` on `serial` between the two times."""
    now = now_us()
    found = []
    for row in request_rows():
        req = Request.from_row(row)
        if any(covers(req, who, act, serial, o, start_us, end_us, now) for o in owners):
            found.append(req)
    return found


def authorise(act: str, serial: str, officer: str, start_us: int, end_us: int,
              what: str, record: bool = True) -> str:  # fmt: skip
    """Directly (the role's own scope) or on an approved request, else 403
    (recorded). The act is recorded here (unless `record` is False), with
    the request it rests on; the request's id is returned ("" when direct)."""
    who = current_person()
    if direct(who, act, officer, people_departments().get(officer)):
        if record:
            audit(act, request.path)
        return ""
    found = grants(who, act, serial, {officer}, start_us, end_us)
    if not found:
        audit(act, request.path, "refused", why=f"no approved request: {what}")
        abort(403, description=msg(
            "To %(act)s %(what)s you need an approved request (Requests).", act=act,
            what=what))  # fmt: skip
    if record:
        audit(act, request.path, request=found[0].id, approver=found[0].approver)
    return found[0].id


def owners_of(unit: model.UnitCompliance) -> set[str]:
    return {unit.officer} | {v.officer for v in unit.recordings}


def unit_grant(serial: str, day: date | None = None) -> tuple[model.UnitCompliance, list[Request]]:
    """The unit, when the signed-in person may see it (on `day`, when
    given): directly (no requests returned) or on approved requests (those
    returned; they limit the days shown). 403 (recorded) when neither, 404
    when there is no such unit; the view or download is recorded."""
    ctx = page_context()
    v = read_units()
    unit = next((u for u in v.units if u.serial == serial), None)
    who = current_person()
    people = people_departments()
    if unit is not None and not may_see_unit(who, unit, people):
        start, end = model.day_bounds(day, ctx.locale) if day else (0, 2**62)
        found = grants(who, "view", serial, owners_of(unit), start, end)
        if not found:
            refuse(f"unit {serial}")
        audit(_act(), request.path, request=found[0].id, approver=found[0].approver)
        named = {r.officer for r in found}
        if "" not in named:  # requests that name officers show those officers' recordings
            unit = model.seen_by(unit, named.__contains__)
        return unit, found
    if unit is not None:
        unit = _cut(unit, who, people)
    if unit is None and not may(who, Act.SEE_RECORDINGS, None, None):
        refuse(f"unit {serial}")  # what does not exist is not told to who may not look
    if unit is None:
        why = dict(v.unreadable).get(serial)
        if why is not None:
            abort(
                404,
                description=msg(
                    "No unit %(serial)s on this dock (%(why)s).", serial=serial, why=why
                ),
            )
        abort(404, description=msg("No unit %(serial)s on this dock.", serial=serial))
    audit(_act(), request.path)
    return unit, []


def unit_of(serial: str, day: date | None = None) -> model.UnitCompliance:
    return unit_grant(serial, day)[0]


def within(days: list[date], found: list[Request]) -> list[date]:
    """The days an approved request reaches (all of them when seen directly)."""
    if not found:
        return days
    loc = page_context().locale
    return [
        d for d in days
        if any(r.from_us < model.day_bounds(d, loc)[1] and model.day_bounds(d, loc)[0] < r.to_us
               for r in found)
    ]  # fmt: skip


def officer_days(name: str) -> list[model.Day]:
    who = current_person()
    found: list[Request] = []
    if not may_see_officer(who, name, people_departments()):
        now = now_us()
        found = [
            r for r in map(Request.from_row, request_rows())
            if r.officer == name and covers(r, who, "view", r.serial, name, r.from_us, r.to_us, now)
        ]  # fmt: skip
        if not found:
            refuse(f"officer {name}")
    units = list(read_units().units)
    if found:
        units = [u for u in units if any(not r.serial or r.serial == u.serial for r in found)]
        audit(_act(), request.path, request=found[0].id, approver=found[0].approver)
    else:
        units = list(dock_view().units)
        audit(_act(), request.path)
    if name not in model.officers(units):
        abort(404, description=msg("No officer %(name)s recorded on this dock's units.", name=name))
    days = model.officer_days(units, name, page_context().locale)
    keep = set(within([d.day for d in days], found))
    return [d for d in days if d.day in keep]
