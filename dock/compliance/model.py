"""The supervisors' compliance model (R22): what a unit's chain and the dock's
index say happened, per unit, per officer and per day.

Input: a unit's chain records as the dock holds them (`<dock>/units/<serial>/
chain.jsonl`), the dock index's rows for the segments it holds, and the
verification the last pull wrote (`<dock>/units/<serial>/verification.json`).
Output: frozen dataclasses, nothing else; `bodycam-dock report` prints them
as text and the page (dock/compliance/web/) draws them.

Times are the unit's wall clock as stamped in each record (microseconds since
the epoch); every record also says how far that clock was trusted, and the
clock changes are events of their own. **Days are UTC dates**: a day runs
from 00:00 to 24:00 UTC, whatever the dock's local time zone.

A recording is what `sealing.recordings` says it is: a `record_start`
record and everything up to its `record_stop` (or the power loss or reboot
that cut it), pauses included. The reading functions at the end are the
only I/O here; they read what the dock holds and never write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sealing import layout
from sealing.recordings import ENDS, recordings, utc_text
from sealing.records import Record, RecordError, parse_line

from ..index import VERIFICATION, Index

LATE_AFTER_S = 24 * 3600  # R15: media is exported within a day of being recorded
GAP_S = 1.0  # a shorter break between two segments is the rollover itself

VERIFIED = "verified"
INCOMPLETE = "incomplete"
FAILED = "failed"
NOT_CHECKED = "not checked"

# What a finding is called where people read it.
FINDINGS = {
    "note_missing": "spoken note missing",
    "late_export": "late export",
    "unmarked": "unmarked recording",
    "unexplained_gap": "unexplained gap",
    "not_verified": "not verified",
}
STOP_CAUSES_FLAGGED = ("battery", "storage")  # stops the unit made, not the officer


class DockUnreadable(Exception):
    """The dock's copy of a unit cannot be read; the message says why."""


# -- input: the verification the pull wrote -----------------------------------


@dataclass(frozen=True)
class SegnoGap:
    """Segment numbers the unit never sealed, between two it did."""

    boot: int
    after: int
    before: int


@dataclass(frozen=True)
class Verification:
    """`<dock>/units/<serial>/verification.json`, as the pull wrote it."""

    checked_us: int
    head_seq: int
    ok: bool
    problems: tuple[str, ...] = ()
    missing: frozenset[str] = frozenset()
    segno_gaps: tuple[SegnoGap, ...] = ()
    receipt: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Verification:
        """Raises ValueError for anything but the documented shape."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            checked, head, ok = data["checked_us"], data["head_seq"], data["ok"]
            problems, missing = data.get("problems", []), data.get("missing", [])
            gaps, receipt = data.get("segno_gaps", []), data.get("receipt")
        except KeyError as exc:
            raise ValueError(f"no {exc.args[0]!r}") from None
        if not (_is_int(checked) and _is_int(head) and isinstance(ok, bool)):
            raise ValueError("checked_us and head_seq must be integers, ok a boolean")
        if not (_strings(problems) and _strings(missing)):
            raise ValueError("problems and missing must be lists of strings")
        if receipt is not None and not isinstance(receipt, str):
            raise ValueError("receipt must be a string or null")
        if not isinstance(gaps, list) or not all(
            isinstance(g, dict) and all(_is_int(g.get(k)) for k in ("boot", "after", "before"))
            for g in gaps
        ):
            raise ValueError("segno_gaps must be a list of {boot, after, before}")
        return cls(
            checked_us=checked,
            head_seq=head,
            ok=ok,
            problems=tuple(problems),
            missing=frozenset(missing),
            segno_gaps=tuple(SegnoGap(g["boot"], g["after"], g["before"]) for g in gaps),
            receipt=receipt,
        )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(s, str) for s in v)


def verification_state(v: Verification | None, last_seq: int, files: Iterable[str]) -> str:
    """A recording is verified when the last check covered all its records,
    held all its segments and passed; a check older than the recording, or
    none at all, has said nothing about it."""
    if v is None or v.head_seq < last_seq:
        return NOT_CHECKED
    if v.missing.intersection(files):
        return INCOMPLETE
    if not v.ok:
        return FAILED
    return VERIFIED


# -- output -------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A stretch of a recording: kind recording, paused, prerecord, or gap
    (segments missing that no pause or stop explains)."""

    kind: str
    start_us: int
    end_us: int
    serial: str
    officer: str
    recording: int | None  # its record_start's seq
    open: bool = False  # still going when the dock last pulled


@dataclass(frozen=True)
class Event:
    """One instant. kind: start, stop, pause, resume, note, gap, clock, fault,
    mark, still, warning, boot. state: for a resume or note `given`, `MISSING`
    or `pending`; for a stop its cause; for a gap `explained`/`unexplained`;
    for a clock change the clock's state after it."""

    kind: str
    at_us: int
    seq: int
    serial: str
    officer: str
    recording: int | None
    text: str
    state: str = ""

    @property
    def flagged(self) -> bool:
        """What a supervisor looks at first."""
        return (
            (self.kind in ("resume", "note") and self.state == "MISSING")
            or (self.kind == "gap" and self.state == "unexplained")
            or (self.kind == "stop" and self.state in STOP_CAUSES_FLAGGED)
            or self.kind == "fault"
        )


@dataclass(frozen=True)
class Finding:
    kind: str  # a key of FINDINGS
    at_us: int
    seq: int
    serial: str
    officer: str
    recording: int | None
    text: str

    @property
    def label(self) -> str:
        return FINDINGS[self.kind]


@dataclass(frozen=True)
class Gap:
    """A break of more than GAP_S between two segments of one boot."""

    seconds: float
    before_segno: int
    seq: int  # the segment after the gap
    at_us: int
    until_us: int
    explained_by: str | None  # "pause: privacy", "record_stop: battery"; None: nothing


@dataclass(frozen=True)
class RecordingView:
    serial: str
    start_seq: int
    last_seq: int
    ended_by: str
    officer: str
    start_us: int
    end_us: int
    segments: tuple[str, ...]
    marks: tuple[str, ...]
    notes_given: int
    notes_missing: int
    late: tuple[str, ...]
    verification: str

    @property
    def seconds(self) -> float:
        return max(0, self.end_us - self.start_us) / 1e6


@dataclass(frozen=True)
class Counts:
    """What the text report (dock.py report) prints for a unit."""

    started: int
    segments: int
    segment_s: float
    stills: int
    pauses: int
    pause_reasons: tuple[str, ...]
    notes_given: int
    notes_missing: tuple[int, ...]  # the resume_note records' seqs
    unverified_records: int
    clock_records: int
    faults: tuple[str, ...]  # "fault:microphone", "power_loss:..."
    late: tuple[str, ...]  # files


@dataclass(frozen=True)
class UnitCompliance:
    serial: str
    officer: str  # of the chain's last record
    head_seq: int
    recordings: tuple[RecordingView, ...]
    spans: tuple[Span, ...]
    events: tuple[Event, ...]
    findings: tuple[Finding, ...]
    gaps: tuple[Gap, ...]
    counts: Counts
    verification: Verification | None
    verification_note: str = ""  # why there is none, when there is none
    late_after_s: int = LATE_AFTER_S

    def days(self) -> list[date]:
        """Every UTC day something of this unit happened on."""
        stamps = [e.at_us for e in self.events] + [f.at_us for f in self.findings]
        for s in self.spans:
            stamps += [s.start_us, s.end_us]
        return sorted({day_of(us) for us in stamps})

    def findings_of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]


@dataclass(frozen=True)
class Day:
    """One UTC day of a unit or of an officer."""

    day: date
    spans: tuple[Span, ...]
    events: tuple[Event, ...]
    findings: tuple[Finding, ...]
    recordings: tuple[RecordingView, ...]

    def count(self, kind: str) -> int:
        return sum(f.kind == kind for f in self.findings)


# -- the analysis ---------------------------------------------------------------


def analyse(
    serial: str,
    records: Sequence[Record],
    held: Mapping[str, Mapping[str, Any]],
    verification: Verification | None = None,
    late_after_s: int = LATE_AFTER_S,
    verification_note: str = "",
) -> UnitCompliance:
    """The whole unit: `records` its chain in order (at least genesis), `held`
    the index rows of the segments the dock holds (file -> row)."""
    if not records:
        raise DockUnreadable(f"{serial}: the dock holds an empty chain")
    by_seq = {r.seq: r for r in records}
    recs = [list(rec.records) for rec in recordings(records)]
    owner = {r.seq: group[0].seq for group in recs for r in group}  # seq -> its recording
    gaps = _gaps(records)
    late = _late(held, late_after_s)
    notes = _notes(records)
    events = _events(serial, records, owner, gaps, notes)
    spans = [s for group in recs for s in _spans(serial, group)]
    spans += [
        Span("gap", g.at_us, g.until_us, serial, by_seq[g.seq].officer, owner.get(g.seq))
        for g in gaps
        if g.explained_by is None
    ]
    views = [_view(serial, group, notes, late, verification) for group in recs]
    findings = _findings(serial, records, owner, gaps, notes, late, views, late_after_s)
    return UnitCompliance(
        serial=serial,
        officer=records[-1].officer,
        head_seq=records[-1].seq,
        recordings=tuple(views),
        spans=tuple(sorted(spans, key=lambda s: s.start_us)),
        events=tuple(sorted(events, key=lambda e: (e.at_us, e.seq))),
        findings=tuple(sorted(findings, key=lambda f: (f.at_us, f.seq))),
        gaps=tuple(gaps),
        counts=_counts(records, notes, late),
        verification=verification,
        verification_note=verification_note,
        late_after_s=late_after_s,
    )


@dataclass(frozen=True)
class _Note:
    """A resume_note record and the resume it judges (None: no resume before it)."""

    record: Record
    resume: Record | None

    @property
    def given(self) -> bool:
        return bool(self.record.body.get("given"))


def _notes(records: Sequence[Record]) -> list[_Note]:
    """Every resume is followed by one resume_note before the next pause or
    stop (docs/STATES.md, invariants): pair them in chain order."""
    out, waiting = [], None
    for r in records:
        if r.type == "resume":
            waiting = r
        elif r.type == "resume_note":
            out.append(_Note(r, waiting))
            waiting = None
        elif r.type in ("boot",):
            waiting = None  # a reboot ends the note window unjudged
    return out


def _gaps(records: Sequence[Record]) -> list[Gap]:
    """Breaks between consecutive segments of one boot (monotonic time is
    only comparable within a boot). A pause or a stop recorded between the
    two segments explains the break; nothing else does."""
    segs = [
        r
        for r in records
        if r.type == "segment"
        and isinstance(r.body.get("start"), dict)
        and isinstance(r.body.get("end"), dict)
    ]
    out = []
    for a, b in zip(segs, segs[1:], strict=False):
        if a.boot != b.boot:
            continue
        seconds = (b.body["start"]["mono_us"] - a.body["end"]["mono_us"]) / 1e6
        if seconds <= GAP_S:
            continue
        why = next(
            (
                f"{r.type}: {r.body.get('reason') or r.body.get('cause')}"
                for r in records
                if a.seq < r.seq < b.seq and r.type in ("pause", "record_stop")
            ),
            None,
        )
        out.append(
            Gap(
                seconds=seconds,
                before_segno=b.body.get("segno", 0),
                seq=b.seq,
                at_us=a.body["end"]["wall_us"],
                until_us=b.body["start"]["wall_us"],
                explained_by=why,
            )
        )
    return out


def _late(held: Mapping[str, Mapping[str, Any]], late_after_s: int) -> dict[str, Mapping[str, Any]]:
    """Held segments stored more than late_after_s after they ended (R15)."""
    return {
        f: row
        for f, row in held.items()
        if row["end_wall_us"] is not None
        and row["stored_us"] - row["end_wall_us"] > late_after_s * 1_000_000
    }


def _note_state(note: _Note | None) -> str:
    if note is None:
        return "pending"
    return "given" if note.given else "MISSING"


def _events(
    serial: str,
    records: Sequence[Record],
    owner: dict[int, int],
    gaps: list[Gap],
    notes: list[_Note],
) -> list[Event]:
    judged = {n.resume.seq: n for n in notes if n.resume is not None}
    by_seq = {r.seq: r for r in records}
    out = []

    def add(r: Record, kind: str, text: str, state: str = "", at: int | None = None) -> None:
        at = r.stamp.wall_us if at is None else at
        out.append(Event(kind, at, r.seq, serial, r.officer, owner.get(r.seq), text, state))

    before: str | None = None
    for r in records:
        said = _describe(r, judged)
        if said is not None:
            add(r, *said)
        if r.type == "clock":
            add(r, "clock", _clock_text(r), str(r.body.get("state") or r.stamp.clock_state))
        elif before is not None and r.stamp.clock_state != before:
            # the clock's trust changed without a clock record: a boot, or holdover ending
            now = r.stamp.clock_state
            add(r, "clock", f"clock {before} -> {now} (source {r.stamp.clock_source})", now)
        before = r.stamp.clock_state
    for g in gaps:
        text = (
            f"{g.seconds:.1f} s gap before segment {g.before_segno} "
            f"({g.explained_by or 'UNEXPLAINED'})"
        )
        add(by_seq[g.seq], "gap", text, "explained" if g.explained_by else "unexplained", g.at_us)
    return out


NOTE_SAID = {
    "given": "spoken note given",
    "MISSING": "spoken note MISSING",
    "pending": "spoken note not judged yet",
}


def _describe(r: Record, judged: Mapping[int, _Note]) -> tuple[str, str, str] | None:
    """(kind, text, state) of a record that is an event; None for the rest
    (clock records are described by `_clock_text`)."""
    b, t = r.body, r.type
    if t == "record_start":
        return "start", f"recording started ({b.get('cause', '?')})", str(b.get("cause", ""))
    if t == "record_stop":
        cause = str(b.get("cause", "?"))
        return "stop", f"recording stopped ({cause})", cause
    if t == "pause":
        return "pause", f"paused (reason: {b.get('reason', '?')})", ""
    if t == "resume":
        state = _note_state(judged.get(r.seq))
        return "resume", f"resumed ({b.get('cause', '?')}); {NOTE_SAID[state]}", state
    if t == "resume_note" and all(n.record is not r for n in judged.values()):
        state = "given" if b.get("given") else "MISSING"
        return "note", f"spoken note {state} (no resume before it)", state
    if t == "mark":
        return "mark", f"marked: {b.get('flag') or b.get('retention') or '?'}", ""
    if t == "still":
        return "still", f"still photo {b.get('file', '')}", ""
    if t in ("fault", "power_loss"):
        return "fault", _fault_text(r), ""
    if t == "stall":  # nothing taken in over a span: a gap, with its reason
        return "fault", f"stall: {b.get('reason', '?')}", ""
    if t == "recovered":  # a device back after a fault: the gap it left is explained
        gap = b.get("gap_us") or 0
        return "fault", f"{b.get('what', '?')} back after {gap / 1e6:.1f} s", ""
    if t in ("battery_low", "storage_low"):
        return "warning", t.replace("_", " "), ""
    if t == "boot":
        return "boot", f"unit powered on ({b.get('cause', '?')})", ""
    return None


def _fault_text(r: Record) -> str:
    b = r.body
    if r.type == "power_loss":
        sealed = f" (segment {b['file']} sealed at recovery)" if b.get("file") else ""
        return f"power loss{sealed}"
    what = b.get("what") or b.get("cause") or "?"
    reason = b.get("reason")
    return f"fault: {what}{f' ({reason})' if reason else ''}"


def _clock_text(r: Record) -> str:
    b = r.body
    state = b.get("state") or r.stamp.clock_state
    if b.get("event") == "rtc":
        took = "taken" if b.get("adopted") else "refused"
        return f"clock: RTC read at power-on, {took} ({b.get('reason', '?')}), clock {state}"
    if b.get("event") == "foreign_step":
        step = b.get("system_step_us", 0) / 1e6
        return f"clock: the system clock was stepped {step:+.3f} s by something else; ignored"
    if b.get("event") == "expired":
        return "clock: holdover expired, clock unverified"
    if "step_us" in b or "after_us" in b:
        step = b.get("step_us")
        if step is None:
            step = b.get("after_us", 0) - b.get("before_us", 0)
        return f"clock stepped {step / 1e6:+.3f} s from {b.get('source', '?')}, clock {state}"
    return f"clock: {state}"


def _spans(serial: str, group: list[Record]) -> list[Span]:
    """Recording and paused stretches of one recording, by the unit's wall
    clock, and the pre-record the first segment reaches back into."""
    start = group[0]
    officer, rec = start.officer, start.seq
    out = []
    first = next((r for r in group if r.type == "segment" and r.body.get("start")), None)
    if first is not None and first.body["start"]["wall_us"] < start.stamp.wall_us:
        out.append(
            Span(
                "prerecord",
                first.body["start"]["wall_us"],
                start.stamp.wall_us,
                serial,
                officer,
                rec,
            )
        )
    state, since = "recording", start.stamp.wall_us
    for r in group[1:]:
        at = r.stamp.wall_us
        if r.type == "pause" and state == "recording":
            out.append(Span("recording", since, max(at, since), serial, officer, rec))
            state, since = "paused", at
        elif r.type == "resume" and state == "paused":
            out.append(Span("paused", since, max(at, since), serial, officer, rec))
            state, since = "recording", at
        elif r.type in ENDS:
            # a reboot or power loss is recorded after power came back: the
            # recording ended at the last thing it recorded, not then
            end = at if r.type == "record_stop" else _last_moment(group[:-1])
            out.append(Span(state, since, max(end, since), serial, officer, rec))
            return out
    out.append(Span(state, since, max(_last_moment(group), since), serial, officer, rec, open=True))
    return out


def _last_moment(group: Sequence[Record]) -> int:
    ends = [r.stamp.wall_us for r in group]
    ends += [r.body["end"]["wall_us"] for r in group if isinstance(r.body.get("end"), dict)]
    return max(ends)


def _view(
    serial: str,
    group: list[Record],
    notes: list[_Note],
    late: Mapping[str, Any],
    verification: Verification | None,
) -> RecordingView:
    seqs = {r.seq for r in group}
    files = tuple(
        r.body["file"]
        for r in group
        if r.type in ("segment", "still", "power_loss") and isinstance(r.body.get("file"), str)
    )
    mine = [n for n in notes if n.record.seq in seqs]
    last = group[-1]
    if last.type == "record_stop":
        ended = f"stop ({last.body.get('cause', '?')})"
    elif last.type in ENDS:
        ended = {"boot": "reboot", "power_loss": "power loss"}[last.type]
    else:
        ended = "still recording when pulled"
    return RecordingView(
        serial=serial,
        start_seq=group[0].seq,
        last_seq=last.seq,
        ended_by=ended,
        officer=group[0].officer,
        start_us=min(s.start_us for s in _spans(serial, group)),
        end_us=_last_moment(group if last.type == "record_stop" else group[:-1] or group),
        segments=files,
        marks=tuple(
            str(r.body.get("flag") or r.body.get("retention")) for r in group if r.type == "mark"
        ),
        notes_given=sum(n.given for n in mine),
        notes_missing=sum(not n.given for n in mine),
        late=tuple(f for f in files if f in late),
        verification=verification_state(verification, last.seq, files),
    )


def _findings(
    serial: str,
    records: Sequence[Record],
    owner: dict[int, int],
    gaps: list[Gap],
    notes: list[_Note],
    late: Mapping[str, Mapping[str, Any]],
    views: list[RecordingView],
    late_after_s: int,
) -> list[Finding]:
    by_seq = {r.seq: r for r in records}
    out = []
    for n in notes:
        if not n.given:
            at = n.resume or n.record  # where it happened: the resume that asked
            out.append(
                Finding(
                    "note_missing",
                    at.stamp.wall_us,
                    n.record.seq,
                    serial,
                    n.record.officer,
                    owner.get(n.record.seq),
                    f"resume at record {at.seq}: no spoken reason was heard "
                    f"(resume_note record {n.record.seq})",
                )
            )
    for g in gaps:
        if g.explained_by is None:
            out.append(
                Finding(
                    "unexplained_gap",
                    g.at_us,
                    g.seq,
                    serial,
                    by_seq[g.seq].officer,
                    owner.get(g.seq),
                    f"{g.seconds:.1f} s with no segment before segment {g.before_segno}, "
                    "and no pause or stop recorded",
                )
            )
    for f, row in sorted(late.items(), key=lambda kv: kv[1]["seq"]):
        hours = (row["stored_us"] - row["end_wall_us"]) / 3.6e9
        out.append(
            Finding(
                "late_export",
                row["end_wall_us"],
                row["seq"],
                serial,
                str(row["officer"] or ""),
                owner.get(row["seq"]),
                f"{f} reached the dock {hours:.1f} h after it was recorded "
                f"(limit {late_after_s / 3600:g} h)",
            )
        )
    for v in views:
        if not v.marks:
            out.append(
                Finding(
                    "unmarked",
                    v.start_us,
                    v.start_seq,
                    serial,
                    v.officer,
                    v.start_seq,
                    f"recording {v.start_seq} has no evidence mark",
                )
            )
        if v.verification in (FAILED, INCOMPLETE):
            out.append(
                Finding(
                    "not_verified",
                    v.start_us,
                    v.start_seq,
                    serial,
                    v.officer,
                    v.start_seq,
                    f"recording {v.start_seq}: verification {v.verification}",
                )
            )
    return out


def _counts(records: Sequence[Record], notes: list[_Note], late: Mapping[str, Any]) -> Counts:
    media = [r for r in records if r.type in ("segment", "still")]
    segs = [r for r in media if r.type == "segment"]
    pauses = [r for r in records if r.type == "pause"]
    return Counts(
        started=sum(r.type == "record_start" for r in records),
        segments=len(segs),
        segment_s=sum(r.body.get("duration_us", 0) for r in segs) / 1e6,
        stills=len(media) - len(segs),
        pauses=len(pauses),
        pause_reasons=tuple(sorted({str(p.body.get("reason")) for p in pauses})),
        notes_given=sum(n.given for n in notes),
        notes_missing=tuple(n.record.seq for n in notes if not n.given),
        unverified_records=sum(r.stamp.clock_state == "unverified" for r in records),
        clock_records=sum(r.type == "clock" for r in records),
        faults=tuple(
            f"{r.type}:{r.body.get('what') or r.body.get('cause')}"
            for r in records
            if r.type in ("fault", "power_loss")
        )
        + tuple(f"stall:{'+'.join(r.body.get('what', []))}" for r in records if r.type == "stall"),
        late=tuple(sorted(late)),
    )


# -- days and officers ----------------------------------------------------------


def day_of(us: int) -> date:
    """The UTC date of a wall-clock stamp."""
    return datetime.fromtimestamp(us / 1e6, UTC).date()


def day_bounds(d: date) -> tuple[int, int]:
    """[00:00, 24:00) UTC of a day, in microseconds since the epoch."""
    start = datetime(d.year, d.month, d.day, tzinfo=UTC)
    return int(start.timestamp()) * 1_000_000, int(
        (start + timedelta(days=1)).timestamp()
    ) * 1_000_000


def _clip(spans: Iterable[Span], lo: int, hi: int) -> list[Span]:
    out = []
    for s in spans:
        if s.end_us >= lo and s.start_us < hi:
            out.append(
                Span(
                    s.kind,
                    max(s.start_us, lo),
                    min(s.end_us, hi - 1),
                    s.serial,
                    s.officer,
                    s.recording,
                    s.open,
                )
            )
    return out


def _day(
    d: date,
    spans: Iterable[Span],
    events: Iterable[Event],
    findings: Iterable[Finding],
    views: Iterable[RecordingView],
) -> Day:
    lo, hi = day_bounds(d)
    return Day(
        day=d,
        spans=tuple(_clip(spans, lo, hi)),
        events=tuple(e for e in events if lo <= e.at_us < hi),
        findings=tuple(f for f in findings if lo <= f.at_us < hi),
        recordings=tuple(v for v in views if v.end_us >= lo and v.start_us < hi),
    )


def unit_day(unit: UnitCompliance, d: date) -> Day:
    return _day(d, unit.spans, unit.events, unit.findings, unit.recordings)


def officers(units: Iterable[UnitCompliance]) -> list[str]:
    """Everyone who recorded on these units (the officer of each record_start)."""
    return sorted({v.officer for u in units for v in u.recordings})


def officer_days(units: Sequence[UnitCompliance], officer: str) -> list[Day]:
    """The officer's days on every unit: what their records and recordings show."""
    spans = [s for u in units for s in u.spans if s.officer == officer]
    events = sorted(
        (e for u in units for e in u.events if e.officer == officer), key=lambda e: e.at_us
    )
    findings = sorted(
        (f for u in units for f in u.findings if f.officer == officer), key=lambda f: f.at_us
    )
    views = [v for u in units for v in u.recordings if v.officer == officer]
    days = {day_of(v.start_us) for v in views} | {day_of(v.end_us) for v in views}
    days |= {day_of(f.at_us) for f in findings}
    return [_day(d, spans, events, findings, views) for d in sorted(days)]


# -- reading the dock (read only) ---------------------------------------------


def read_verification(unit_dir: Path) -> tuple[Verification | None, str]:
    """The pull's verification of this unit, or None and why not."""
    path = unit_dir / VERIFICATION
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, "no verification recorded by the dock yet"
    except (OSError, ValueError) as exc:
        return None, f"{VERIFICATION} unreadable: {exc}"
    try:
        return Verification.from_json(data), ""
    except ValueError as exc:
        return None, f"{VERIFICATION} unreadable: {exc}"


def read_unit(
    dock_dir: Path, serial: str, index: Index, late_after_s: int = LATE_AFTER_S
) -> UnitCompliance:
    try:
        layout.check_serial(serial)  # it names a folder: nothing else may
    except ValueError as exc:
        raise DockUnreadable(str(exc)) from None
    unit_dir = dock_dir / "units" / serial
    try:
        chain = (unit_dir / layout.CHAIN).read_bytes()
        records = [parse_line(line)[0] for line in chain.splitlines()]
    except FileNotFoundError:
        raise DockUnreadable(f"{serial}: no copy of its chain on this dock") from None
    except OSError as exc:
        raise DockUnreadable(f"{serial}: {exc.strerror or exc}") from None
    except RecordError as exc:
        raise DockUnreadable(f"{serial}: the dock's chain does not parse: {exc}") from None
    verification, note = read_verification(unit_dir)
    held = index.held(serial)
    return analyse(serial, records, held, verification, late_after_s, note)


@dataclass(frozen=True)
class DockView:
    """What a dock's index names: the units read, and those that could not be
    (an agency index names units whose chain another dock holds)."""

    units: tuple[UnitCompliance, ...]
    unreadable: tuple[tuple[str, str], ...] = ()  # (serial, why)


def read_dock(dock_dir: Path, index: Index, late_after_s: int = LATE_AFTER_S) -> DockView:
    """Every unit the index names, in serial order, from the chains this dock holds."""
    units, unreadable = [], []
    for serial in index.serials():
        try:
            units.append(read_unit(dock_dir, serial, index, late_after_s))
        except DockUnreadable as exc:
            unreadable.append((serial, str(exc)))
    return DockView(tuple(units), tuple(unreadable))


def short_time(us: int) -> str:
    """HH:MM:SS UTC, for tables and labels."""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%H:%M:%S")


def iso(us: int) -> str:
    return utc_text(us)
