"""What `bodycam verify` found, and how it is printed.

The report's size does not follow the store's: records go to a sink as they
are checked (a list only when the caller asks to keep them), and problems and
notes are listed up to `MAX_LISTED` each and counted beyond that.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .records import Record

MAX_LISTED = 10_000


@dataclass
class Problem:
    where: str
    message: str
    record: int | None = None
    offset: int | None = None

    def __str__(self) -> str:
        at = self.where
        if self.record is not None:
            at += f" record {self.record}"
        if self.offset is not None:
            at += f" byte {self.offset}"
        return f"{at}: {self.message}"


RecordSink = Callable[[dict[str, Any]], None]


@dataclass
class Report:
    store: str
    serial: str = ""
    anchors: dict[str, str] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unlisted_problems: int = 0
    unlisted_notes: int = 0
    record_types: dict[str, int] = field(default_factory=dict)
    unverified_clock: int = 0
    # where each checked record goes; None keeps them in `records`
    sink: RecordSink | None = field(default=None, repr=False, compare=False)
    # the checked records parsed, in chain order, when a caller asked to keep
    # them (`keep=True`: the dock and the court copy work on them)
    parsed: list[Record] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unlisted_problems

    @property
    def chain(self) -> list[Record]:
        """The parsed records, in chain order (verified with `keep=True`)."""
        if self.parsed is None:
            raise ValueError("the records were not kept: verify with keep=True")
        return self.parsed

    def fail(
        self, where: str, message: str, record: int | None = None, offset: int | None = None
    ) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(Problem(where, message, record, offset))
        else:
            self.unlisted_problems += 1

    def note(self, message: str) -> None:
        if len(self.notes) < MAX_LISTED:
            self.notes.append(message)
        else:
            self.unlisted_notes += 1

    def add_record(self, entry: dict[str, Any]) -> None:
        self.record_types[entry["type"]] = self.record_types.get(entry["type"], 0) + 1
        if entry["clock"]["state"] == "unverified":
            self.unverified_clock += 1
        if self.sink is None:
            self.records.append(entry)
        else:
            self.sink(entry)

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "serial": self.serial,
            "ok": self.ok,
            "anchors": self.anchors,
            "records": self.records,
            "segments": self.segments,
            "receipts": self.receipts,
            "notes": self.notes,
            "unlisted_notes": self.unlisted_notes,
            "problems": [vars(p) for p in self.problems],
            "unlisted_problems": self.unlisted_problems,
        }


class JsonRecords:
    """Writes a report as JSON with its records streamed as they are checked,
    so a long chain is never held to be printed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.n = 0

    def __call__(self, entry: dict[str, Any]) -> None:
        # nothing is written before the first record: an input refused as
        # unusable before any record leaves no half object behind
        self.out.write(('{"records": [' if not self.n else ",") + "\n  ")
        self.out.write(json.dumps(entry, ensure_ascii=False))
        self.n += 1

    def finish(self, report: Report) -> None:
        rest = report.to_json()
        del rest["records"]
        body = json.dumps(rest, indent=1, ensure_ascii=False)
        self.out.write(('{"records": [' if not self.n else "") + "\n ],\n" + body[1:] + "\n")


def human(report: Report) -> str:
    """The examiner's summary."""
    lines = [f"store      {report.store}", f"serial     {report.serial or '?'}"]
    for k, v in report.anchors.items():
        lines.append(f"{k:<10} {v}")
    n_records = sum(report.record_types.values())
    lines.append(
        f"records    {n_records} ("
        + ", ".join(f"{n} {t}" for t, n in sorted(report.record_types.items()))
        + ")"
    )
    status: dict[str, int] = {}
    for s in report.segments:
        status[s["status"]] = status.get(s["status"], 0) + 1
    lines.append(
        f"media      {len(report.segments)} files ("
        + ", ".join(f"{n} {t}" for t, n in sorted(status.items()))
        + ")"
    )
    lines.append(f"receipts   {len(report.receipts)}")
    if report.unverified_clock:
        lines.append(f"clock      {report.unverified_clock} records made with an unverified clock")
    lines += [f"note       {n}" for n in report.notes[:50]]
    if len(report.notes) > 50 or report.unlisted_notes:
        lines.append(f"note       ... and {len(report.notes) - 50 + report.unlisted_notes} more")
    if report.ok:
        lines.append("RESULT     VERIFIED")
    else:
        first = report.problems[0] if report.problems else "problems beyond the listing limit"
        lines.append(f"RESULT     FAILED at {first}")
        lines += [f"problem    {p}" for p in report.problems[1:20]]
        more = len(report.problems) - 20 + report.unlisted_problems
        if more > 0:
            lines.append(f"problem    ... and {more} more")
    return "\n".join(lines)
