"""Cases (S2 art. 10 and 12: records filed day by day and case by case;
evidence records carry the case's name and number). Pure rules, no I/O:
the page (dock/compliance/web/cases.py) and the commands read and write the
index's `cases` and `case_recordings`, and ask here.

- A case has a number (案件编号, e.g. 衡统稽〔2026〕12号) and a name, both
  free text in any script, checked once here.
- Filing a recording in a case places the case hold on it in the same
  transaction (dock/retention.py: kept with the case file, S0 art. 25);
  releasing that hold is the retention approver's, as for any hold.
- Who may open a case or file in it: dock/access.py's FILE_CASES.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .texts import Msg, msg

NUMBER_MAX = 64
NAME_MAX = 200


class CaseRefused(ValueError):
    """args[0]: one line (a Msg) naming what was refused and why."""


@dataclass(frozen=True)
class Case:
    number: str
    name: str
    opened_by: str
    opened_us: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Case:
        return cls(row["number"], row["name"], row["opened_by"], row["opened_us"])


def _text(value: str, limit: int, what: Msg) -> str:
    text = " ".join(value.split())
    if not text or len(text) > limit or not text.isprintable():
        raise CaseRefused(
            msg("%(what)s: want 1 to %(limit)s printable characters", what=what, limit=limit)
        )
    return text


def case_number(value: str) -> str:
    """A case number as filed: spaces collapsed; no slash (it names a page)."""
    number = _text(value, NUMBER_MAX, msg("case number"))
    if "/" in number or "\\" in number:
        raise CaseRefused(msg("case number %(number)s: no slashes", number=number))
    return number


def case_name(value: str) -> str:
    return _text(value, NAME_MAX, msg("case name"))


def cases_by_recording(
    links: Iterable[Mapping[str, Any]], cases: Iterable[Mapping[str, Any]]
) -> dict[tuple[str, int], list[Case]]:
    """(serial, recording) -> the cases it is filed in, in number order."""
    known = {r["number"]: Case.from_row(r) for r in cases}
    out: dict[tuple[str, int], list[Case]] = {}
    for link in links:
        case = known.get(link["number"])
        if case is not None:
            out.setdefault((link["serial"], link["recording"]), []).append(case)
    for found in out.values():
        found.sort(key=lambda c: c.number)
    return out


def hold_row(number: str, serial: str, recording: int, by: str, at_us: int) -> dict[str, Any]:
    """The retention_changes row filing in a case places (the case hold)."""
    return {
        "serial": serial,
        "recording": recording,
        "at_us": at_us,
        "change": "hold",
        "value": "case",
        "by": by,
        "reason": f"case {number}",
        "approved_by": "",
    }
