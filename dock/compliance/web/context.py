"""What one app serves: its dock, the thresholds it judges by, and the
languages it speaks. Held by the app (app.extensions), never by a module, so
two apps in one process (the tests make several) share nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from flask import Flask, abort, current_app, g

from link.locale import Locale

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


def dock_view() -> model.DockView:
    """Every unit the index names, read now; 503 when the index cannot be read."""
    ctx = page_context()
    try:
        return model.read_dock(ctx.dock_dir, ctx.index, ctx.late_after_s, ctx.locale)
    except INDEX_ERRORS as exc:
        abort(
            503,
            description=msg(
                "The dock's index cannot be read: %(error)s", error=describe_error(exc)
            ),
        )


def unit_of(serial: str) -> model.UnitCompliance:
    v = dock_view()
    unit = next((u for u in v.units if u.serial == serial), None)
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
    return unit


def officer_days(name: str) -> list[model.Day]:
    units = list(dock_view().units)
    if name not in model.officers(units):
        abort(404, description=msg("No officer %(name)s recorded on this dock's units.", name=name))
    return model.officer_days(units, name, page_context().locale)
