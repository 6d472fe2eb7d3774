"""What one app serves: its dock and the thresholds it judges by. Held by
the app (app.extensions), never by a module, so two apps in one process (the
tests make several) share nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from flask import Flask, abort, current_app

from ...index import INDEX_ERRORS, Index, describe_error
from .. import model

KEY = "bodycam_page"


@dataclass(frozen=True)
class PageContext:
    dock_dir: Path
    index: Index
    late_after_s: int


def install(app: Flask, ctx: PageContext) -> None:
    app.extensions[KEY] = ctx


def page_context() -> PageContext:
    return cast(PageContext, current_app.extensions[KEY])


def dock_view() -> model.DockView:
    """Every unit the index names, read now; 503 when the index cannot be read."""
    ctx = page_context()
    try:
        return model.read_dock(ctx.dock_dir, ctx.index, ctx.late_after_s)
    except INDEX_ERRORS as exc:
        abort(503, description=f"The dock's index cannot be read: {describe_error(exc)}")


def unit_of(serial: str) -> model.UnitCompliance:
    v = dock_view()
    unit = next((u for u in v.units if u.serial == serial), None)
    if unit is None:
        why = dict(v.unreadable).get(serial)
        abort(404, description=f"No unit {serial} on this dock{f' ({why})' if why else ''}.")
    return unit


def officer_days(name: str) -> list[model.Day]:
    units = list(dock_view().units)
    if name not in model.officers(units):
        abort(404, description=f"No officer {name} recorded on this dock's units.")
    return model.officer_days(units, name)
