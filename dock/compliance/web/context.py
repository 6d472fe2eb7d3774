"""What one app serves: its dock, the thresholds it judges by, and the
languages it speaks. Held by the app (app.extensions), never by a module, so
two apps in one process (the tests make several) share nothing.

Every page and download reads evidence through `dock_view`, `unit_of` and
`officer_days` here, and they show only what the signed-in person's role
allows (dock/access.py): a unit or officer outside it answers 403 and the
refusal is a line of the audit log, as is every view and download."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast

from flask import Flask, abort, current_app, g, request

from link.locale import Locale

from ...access import Act, Person, may, scope_of
from ...audit import AuditError, AuditLog
from ...index import INDEX_ERRORS, Index, describe_error
from ...texts import Texts, msg
from .. import model

KEY = "bodycam_page"


@dataclass(frozen=True)
class PageContext:
    dock_dir: Path
    index: Index
    late_after_s: int
    locale: Locale  # the dock's: its zone makes the days, its language is the default
    texts: dict[str, Texts] = field(default_factory=dict)  # language -> texts, the dock's zone


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


def _person() -> Person:
    who = g.get("person")
    if not isinstance(who, Person):
        abort(403)  # only signed-in requests get here (auth.require_sign_in)
    return who


def _departments() -> dict[str, str]:
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
    who = _person()
    if scope_of(who.role, Act.SEE_LEDGER) is None:
        refuse("the usage ledger")
    try:
        rows = page_context().index.ledger()
    except INDEX_ERRORS as exc:
        abort(503, description=msg("The dock's index cannot be read: %(error)s",
                                   error=describe_error(exc)))  # fmt: skip
    audit(_act(), request.path)
    return [r for r in rows if may(who, Act.SEE_LEDGER, r["officer"], r["department"])]


def dock_view() -> model.DockView:
    """Every unit the index names that the signed-in person may see, read
    now; 503 when the index cannot be read."""
    ctx = page_context()
    who, departments = _person(), _departments()
    try:
        view = model.read_dock(ctx.dock_dir, ctx.index, ctx.late_after_s, ctx.locale)
    except INDEX_ERRORS as exc:
        abort(
            503,
            description=msg(
                "The dock's index cannot be read: %(error)s", error=describe_error(exc)
            ),
        )
    units = tuple(u for u in view.units if may_see_unit(who, u, departments))
    # a unit whose chain cannot be read has no officer to judge by: leader and legal only
    unreadable = view.unreadable if may(who, Act.SEE_RECORDINGS, None, None) else ()
    return model.DockView(units, unreadable)


def unit_of(serial: str) -> model.UnitCompliance:
    """The unit, when the signed-in person may see it: 403 (recorded) when not,
    404 when there is none; a view or download of it is recorded."""
    ctx = page_context()
    try:
        v = model.read_dock(ctx.dock_dir, ctx.index, ctx.late_after_s, ctx.locale)
    except INDEX_ERRORS as exc:
        abort(503, description=msg("The dock's index cannot be read: %(error)s",
                                   error=describe_error(exc)))  # fmt: skip
    unit = next((u for u in v.units if u.serial == serial), None)
    who = _person()
    if unit is not None and not may_see_unit(who, unit, _departments()):
        refuse(f"unit {serial}")
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
    return unit


def officer_days(name: str) -> list[model.Day]:
    who = _person()
    if not may_see_officer(who, name, _departments()):
        refuse(f"officer {name}")
    units = list(dock_view().units)
    audit(_act(), request.path)
    if name not in model.officers(units):
        abort(404, description=msg("No officer %(name)s recorded on this dock's units.", name=name))
    return model.officer_days(units, name, page_context().locale)
