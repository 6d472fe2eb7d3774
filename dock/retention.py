"""How long each recording is kept (S0 art. 24-25 and 27, S1 art. 16, S3
art. 20): its class, its holds, its expiry. Pure rules, no I/O: the
compliance model (dock/compliance/model.py) reads the changes from the index
and dock.toml's [retention] policy, and asks here.

- Every recording has a class. The officer's evidence mark (R19) makes it
  "evidence" (补强证据类, 2 years by default); unmarked is "supervision"
  (监督保障类, 6 months) — the normal case, not a finding. A supervisor may
  raise a class with a reason; lowering it needs the approver the policy
  names (the leadership by default). "long_term" never expires.
- Holds suspend expiry until released: a case (kept with the case file,
  art. 25), a dispute or complaint, obstruction or assault, an appeal or
  litigation, a mass incident, or anything else kept long-term (art. 27).
- Expiry is the recording's local start date (the dock's zone) plus the
  class's months; the recording is due for disposal the day after, if no
  hold is on it. Disposal itself is an approved, registered act
  (`bodycam-dock dispose`).
"""

from __future__ import annotations

import calendar
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from .texts import Msg, msg

CLASSES = ("supervision", "evidence", "long_term")
RANK = {c: i for i, c in enumerate(CLASSES)}
HOLDS = ("case", "dispute", "obstruction", "litigation", "mass_incident", "long_term")
CHANGES = ("class", "hold", "release")  # what a row of the index's retention_changes does

CLASS_NAMES: dict[str, Msg] = {
    "supervision": msg("supervision (监督保障类)"),
    "evidence": msg("supplementary evidence (补强证据类)"),
    "long_term": msg("long-term"),
}
HOLD_NAMES: dict[str, Msg] = {
    "case": msg("case"),
    "dispute": msg("dispute or complaint"),
    "obstruction": msg("obstruction or assault"),
    "litigation": msg("appeal or litigation"),
    "mass_incident": msg("mass incident"),
    "long_term": msg("other, kept long-term"),
}


class PolicyError(ValueError):
    """dock.toml's [retention] cannot be used; the text names the key and why."""


@dataclass(frozen=True)
class Policy:
    """The agency's retention policy; the seeds' values by default."""

    supervision_months: int = 6
    evidence_months: int = 24
    approver: str = "leader"  # the role that approves a lowered class and a disposal

    def months(self, cls: str) -> int | None:
        if cls == "supervision":
            return self.supervision_months
        if cls == "evidence":
            return self.evidence_months
        return None  # long_term


def load_policy(dock_dir: Path) -> Policy:
    """dock.toml's [retention]; the defaults when there is none."""
    path = dock_dir / "dock.toml"
    try:
        table = tomllib.loads(path.read_text()).get("retention", {}) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: {exc}") from None
    return parse_policy(table, str(path))


def parse_policy(table: Mapping[str, Any], where: str) -> Policy:
    from .access import ROLES

    unknown = set(table) - {"supervision_months", "evidence_months", "approver"}
    if unknown:
        raise PolicyError(f"{where} [retention]: unknown key {sorted(unknown)[0]!r}")
    base = Policy()
    values: dict[str, Any] = {}
    for key in ("supervision_months", "evidence_months"):
        v = table.get(key, getattr(base, key))
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 1200:
            raise PolicyError(f"{where} [retention] {key} = {v!r}: want whole months, 1 to 1200")
        values[key] = v
    approver = table.get("approver", base.approver)
    if approver not in ROLES:
        raise PolicyError(f"{where} [retention] approver = {approver!r}: want one of {ROLES}")
    return Policy(values["supervision_months"], values["evidence_months"], approver)


def add_months(day: date, months: int) -> date:
    """The same day `months` later; the month's last day when it has no such day."""
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Standing:
    """One recording's retention as of now: its class, holds and expiry."""

    cls: str
    holds: tuple[str, ...]  # kinds in force, in the order placed
    expires: date | None  # the last day it is kept; None: never (long-term)

    def due(self, as_of: date) -> bool:
        """Listed for disposal on `as_of`: expired and not held."""
        return not self.holds and self.expires is not None and as_of > self.expires


def standing(
    marks: Iterable[str], day: date, changes: Iterable[Mapping[str, Any]], policy: Policy
) -> Standing:
    """`marks`: the officer's marks in the chain; `day`: the recording's local
    start date; `changes`: its rows of retention_changes, oldest first."""
    cls = "evidence" if "evidence" in set(marks) else "supervision"
    holds: list[str] = []
    for c in changes:
        if c["change"] == "class" and c["value"] in CLASSES:
            cls = c["value"]
        elif c["change"] == "hold" and c["value"] in HOLDS and c["value"] not in holds:
            holds.append(c["value"])
        elif c["change"] == "release" and c["value"] in holds:
            holds.remove(c["value"])
    months = policy.months(cls)
    return Standing(cls, tuple(holds), None if months is None else add_months(day, months))
