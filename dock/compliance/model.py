"""The supervisors' compliance model (R22): what a unit's chain and the dock's
index say happened, per unit, per officer and per day.

Input: a unit's chain records as the dock holds them (`<dock>/units/<serial>/
chain.jsonl`), the dock index's rows for the segments it holds, and the
verification the last pull wrote (`<dock>/units/<serial>/verification.json`).
Output: frozen dataclasses, nothing else; `bodycam-dock report` prints them
as text and the page (dock/compliance/web/) draws them.

Times are the unit's wall clock as stamped in each record (microseconds since
the epoch, UTC); every record also says how far that clock was trusted, and
the clock changes are events of their own. **Days are dates in the dock's
time zone** (`<dock>/dock.toml` [locale], Asia/Shanghai by default): a day
runs from local midnight to local midnight.

What people read (event and finding texts, labels) is made of `Msg`s
(dock/texts.py), translated where it is shown: the model itself speaks no
language. Which note judges which resume is `sealing.recordings`' rule.

A recording is what `sealing.recordings` says it is: a `record_start`
record and everything up to its `record_stop` (or the power loss or reboot
that cut it), pauses included. The reading functions at the end are the
only I/O here; they read what the dock holds and never write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from link.locale import Locale
from sealing import layout
from sealing.recordings import ENDS, ResumeNote, recordings, resume_notes
from sealing.records import Record, RecordError, parse_line

from .. import chain_codes as codes
from .. import retention
from ..cases import Case, cases_by_recording
from ..index import VERIFICATION, Index, Row
from ..texts import Msg, msg, zone_day, zone_day_bounds

DEFAULT_LOCALE = Locale()  # Simplified Chinese, Asia/Shanghai: what a dock without dock.toml uses
LATE_AFTER_S = 24 * 3600  # R15: media is exported within a day of being recorded
GAP_S = 1.0  # a shorter break between two segments is the rollover itself

VERIFIED = "verified"
INCOMPLETE = "incomplete"
FAILED = "failed"
NOT_CHECKED = "not checked"

# What a finding is called where people read it.
FINDINGS: dict[str, Msg] = {
    "note_missing": msg("Spoken reason missing"),
    "late_export": msg("Late export"),
    "unexplained_gap": msg("Unexplained gap"),
    "not_verified": msg("Not verified"),
}
VERIFICATION_STATES: dict[str, Msg] = {
    VERIFIED: msg("verified"),
    INCOMPLETE: msg("incomplete"),
    FAILED: msg("failed"),
    NOT_CHECKED: msg("not checked"),
}
EVENT_KINDS: dict[str, Msg] = {
    "start": msg("start"),
    "stop": msg("stop"),
    "pause": msg("pause"),
    "resume": msg("resume"),
    "note": msg("spoken reason"),
    "gap": msg("gap"),
    "clock": msg("clock"),
    "fault": msg("fault"),
    "mark": msg("mark"),
    "still": msg("still photo"),
    "warning": msg("warning"),
    "boot": msg("power on"),
    "check": msg("pre-use check"),
    "login": msg("dock login"),
    "export": msg("export"),
    "release": msg("storage released"),
    "checkout": msg("check-out"),
}
# a dock's login at the unit (firmware/auth.py's results) as people read it
LOGIN_RESULTS: dict[str, Msg] = {
    "ok": msg("officer's password and fingerprint accepted"),
    "ok_no_reader": msg(
        "officer's password accepted; no fingerprint reader: the fingerprint is the "
        "dock operator's word"
    ),
    "bad_password": msg("wrong password"),
    "no_fingerprint": msg("fingerprint not confirmed"),
    "locked": msg("locked out after too many failures"),
    "error": msg("the unit could not check the login"),
}
NOTE_STATES: dict[str, Msg] = {
    "given": msg("given"),
    "MISSING": msg("MISSING"),
    "pending": msg("not judged yet"),
}
GAP_STATES: dict[str, Msg] = {
    "explained": msg("explained"),
    "unexplained": msg("UNEXPLAINED"),
}
STOP_CAUSES_FLAGGED = ("battery", "storage")  # stops the unit made, not the officer


class DockUnreadable(Exception):
    """The dock's copy of a unit cannot be read; its Msg says why."""


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
    mark, still, warning, boot; the unit's own: check (pre-use check), login
    (a dock's login at the unit), export, release. state: for a check PASS or
    FAIL; for a login the unit's result; for a resume or note `given`, `MISSING`
    or `pending`; for a stop its cause; for a gap `explained`/`unexplained`;
    for a clock change the clock's state after it."""

    kind: str
    at_us: int
    seq: int
    serial: str
    officer: str
    recording: int | None
    text: Msg
    state: str = ""

    @property
    def kind_label(self) -> Msg | str:
        return EVENT_KINDS.get(self.kind, self.kind)

    @property
    def state_label(self) -> Msg | str:
        """The state as people read it: a note's verdict, a stop's cause, a
        gap's explanation, a clock's trust."""
        if self.kind in ("resume", "note"):
            return NOTE_STATES.get(self.state, self.state)
        if self.kind == "gap":
            return GAP_STATES.get(self.state, self.state)
        if self.kind == "clock":
            return codes.clock_state(self.state)
        if self.kind in ("start", "stop") and self.state:
            return codes.cause(self.state)
        if self.kind == "login":
            return LOGIN_RESULTS.get(self.state, self.state)
        return self.state

    @property
    def flagged(self) -> bool:
        """What a supervisor looks at first."""
        return (
            (self.kind in ("resume", "note") and self.state == "MISSING")
            or (self.kind == "gap" and self.state == "unexplained")
            or (self.kind == "stop" and self.state in STOP_CAUSES_FLAGGED)
            or self.kind == "fault"
            or (self.kind == "check" and self.state == "FAIL")
            or (self.kind == "login" and self.state not in ("", "ok"))
        )


@dataclass(frozen=True)
class Finding:
    kind: str  # a key of FINDINGS
    at_us: int
    seq: int
    serial: str
    officer: str
    recording: int | None
    text: Msg

    @property
    def label(self) -> Msg:
        return FINDINGS[self.kind]


@dataclass(frozen=True)
class Gap:
    """A break of more than GAP_S between two segments of one boot."""

    seconds: float
    before_segno: int
    seq: int  # the segment after the gap
    at_us: int
    until_us: int
    explained_by: Msg | None  # "pause (privacy)", "stop (battery exhausted)"; None: nothing


@dataclass(frozen=True)
class RecordingView:
    serial: str
    start_seq: int
    last_seq: int
    ended_by: Msg
    officer: str
    start_us: int
    end_us: int
    segments: tuple[str, ...]
    marks: tuple[str, ...]
    notes_given: int
    notes_missing: int
    late: tuple[str, ...]
    verification: str
    # retention (dock/retention.py): filled in by read_dock from the index and policy
    retention: str = "supervision"
    expires: date | None = None
    holds: tuple[str, ...] = ()
    disposed: Row | None = None  # the index's disposals row, once its files were removed
    cases: tuple[Case, ...] = ()  # the cases it is filed in (dock/cases.py)

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
    verification_note: Msg | None = None  # why there is none, when there is none
    late_after_s: int = LATE_AFTER_S
    locale: Locale = DEFAULT_LOCALE  # whose days: the dock's zone

    def days(self) -> list[date]:
        """Every local day (the dock's zone) something of this unit happened on."""
        stamps = [e.at_us for e in self.events] + [f.at_us for f in self.findings]
        for s in self.spans:
            stamps += [s.start_us, s.end_us]
        return sorted({day_of(us, self.locale) for us in stamps})

    def findings_of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]


@dataclass(frozen=True)
class Day:
    """One local day (the dock's zone) of a unit or of an officer."""

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
    verification_note: Msg | None = None,
    locale: Locale = DEFAULT_LOCALE,
) -> UnitCompliance:
    """The whole unit: `records` its chain in order (at least genesis), `held`
    the index rows of the segments the dock holds (file -> row), `locale`
    the dock's (its zone makes the days)."""
    if not records:
        raise DockUnreadable(msg("%(serial)s: the dock holds an empty chain", serial=serial))
    by_seq = {r.seq: r for r in records}
    recs = [list(rec.records) for rec in recordings(records)]
    owner = {r.seq: group[0].seq for group in recs for r in group}  # seq -> its recording
    gaps = _gaps(records)
    late = _late(held, late_after_s)
    notes = resume_notes(records)
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
        locale=locale,
    )


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
                _explains(r)
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


def _explains(r: Record) -> Msg:
    """What a pause or stop between two segments says about the break."""
    if r.type == "pause":
        return msg("pause (%(reason)s)", reason=codes.cause(r.body.get("reason")))
    return msg("stop (%(cause)s)", cause=codes.cause(r.body.get("cause")))


def _late(held: Mapping[str, Mapping[str, Any]], late_after_s: int) -> dict[str, Mapping[str, Any]]:
    """Held segments stored more than late_after_s after they ended (R15)."""
    return {
        f: row
        for f, row in held.items()
        if row["end_wall_us"] is not None
        and row["stored_us"] - row["end_wall_us"] > late_after_s * 1_000_000
    }


def _note_state(note: ResumeNote | None) -> str:
    if note is None:
        return "pending"
    return "given" if note.given else "MISSING"


def _events(
    serial: str,
    records: Sequence[Record],
    owner: dict[int, int],
    gaps: list[Gap],
    notes: list[ResumeNote],
) -> list[Event]:
    judged = {n.resume.seq: n for n in notes if n.resume is not None}
    orphans = {n.note.seq for n in notes if n.resume is None}
    by_seq = {r.seq: r for r in records}
    out = []

    def add(r: Record, kind: str, text: Msg, state: str = "", at: int | None = None) -> None:
        at = r.stamp.wall_us if at is None else at
        out.append(Event(kind, at, r.seq, serial, r.officer, owner.get(r.seq), text, state))

    before: str | None = None
    for r in records:
        said = _describe(r, judged, orphans)
        if said is not None:
            add(r, *said)
        if r.type == "clock":
            add(r, "clock", _clock_text(r), str(r.body.get("state") or r.stamp.clock_state))
        elif before is not None and r.stamp.clock_state != before:
            # the clock's trust changed without a clock record: a boot, or holdover ending
            now = r.stamp.clock_state
            text = msg(
                "clock %(before)s -> %(now)s (source: %(source)s)",
                before=codes.clock_state(before),
                now=codes.clock_state(now),
                source=codes.clock_source(r.stamp.clock_source),
            )
            add(r, "clock", text, now)
        before = r.stamp.clock_state
    for g in gaps:
        if g.explained_by is not None:
            text = msg(
                "%(seconds).1f s gap before segment %(segno)s (%(why)s)",
                seconds=g.seconds,
                segno=g.before_segno,
                why=g.explained_by,
            )
        else:
            text = msg(
                "%(seconds).1f s gap before segment %(segno)s (UNEXPLAINED)",
                seconds=g.seconds,
                segno=g.before_segno,
            )
        add(by_seq[g.seq], "gap", text, "explained" if g.explained_by else "unexplained", g.at_us)
    return out


NOTE_SAID: dict[str, Msg] = {
    "given": msg("spoken reason given"),
    "MISSING": msg("spoken reason MISSING"),
    "pending": msg("spoken reason not judged yet"),
}


def _describe(
    r: Record, judged: Mapping[int, ResumeNote], orphans: set[int]
) -> tuple[str, Msg, str] | None:
    """(kind, text, state) of a record that is an event; None for the rest
    (clock records are described by `_clock_text`)."""
    b, t = r.body, r.type
    if t == "record_start":
        text = msg("recording started (%(cause)s)", cause=codes.cause(b.get("cause")))
        return "start", text, str(b.get("cause", ""))
    if t == "record_stop":
        cause = str(b.get("cause", "?"))
        return "stop", msg("recording stopped (%(cause)s)", cause=codes.cause(cause)), cause
    if t == "pause":
        return "pause", msg("paused (reason: %(reason)s)", reason=codes.cause(b.get("reason"))), ""
    if t == "resume":
        state = _note_state(judged.get(r.seq))
        text = msg(
            "resumed (%(cause)s); %(note)s",
            cause=codes.cause(b.get("cause")),
            note=NOTE_SAID[state],
        )
        return "resume", text, state
    if t == "resume_note" and r.seq in orphans:
        if b.get("given") is True:
            return "note", msg("spoken reason given, but no resume it belongs to"), "given"
        return "note", msg("spoken reason MISSING, and no resume it belongs to"), "MISSING"
    if t == "mark":
        return (
            "mark",
            msg("marked: %(flag)s", flag=codes.flag(b.get("flag") or b.get("retention"))),
            "",
        )
    if t == "still":
        return "still", msg("still photo %(file)s", file=str(b.get("file", ""))), ""
    if t in ("fault", "power_loss"):
        return "fault", _fault_text(r), ""
    if t == "stall":  # nothing taken in over a span: a gap, with its length
        span = b.get("span_us")
        seconds = span / 1e6 if isinstance(span, int) and not isinstance(span, bool) else 0.0
        return "fault", msg("stall: nothing taken in for %(seconds).1f s", seconds=seconds), ""
    if t == "recovered":  # a device back after a fault: the gap it left is explained
        gap = b.get("gap_us") or 0
        text = msg(
            "%(device)s back after %(seconds).1f s",
            device=codes.device(b.get("what")),
            seconds=gap / 1e6 if isinstance(gap, int | float) else 0.0,
        )
        return "fault", text, ""
    if t == "battery_low":
        return "warning", msg("battery low"), ""
    if t == "storage_low":
        return "warning", msg("storage low"), ""
    if t == "boot":
        return "boot", msg("unit powered on (%(cause)s)", cause=codes.cause(b.get("cause"))), ""
    return _unit_duty(r)


def _unit_duty(r: Record) -> tuple[str, Msg, str] | None:
    """What the unit did besides recording that a supervisor must see: its
    pre-use checks, logins at the dock, exports and the storage it freed."""
    b, t = r.body, r.type
    if t == "selftest":
        got = b.get("checks")
        checks: dict[str, Any] = got if isinstance(got, dict) else {}
        failed = sorted(
            str(name)[:40] for name, said in checks.items()
            if isinstance(said, str) and said != "PASS" and not said.startswith("N/A")
        )  # fmt: skip
        if failed:
            text = msg("pre-use check FAILED: %(checks)s", checks=", ".join(failed))
            return "check", text, "FAIL"
        return "check", msg("pre-use check passed (%(count)s checks)", count=len(checks)), "PASS"
    if t == "auth":
        result = str(b.get("result", "?"))[:40]
        if result == "ok" and b.get("reader") in (None, "", "none"):
            result = "ok_no_reader"  # let in on the operator's word: flagged
        said, dock = LOGIN_RESULTS.get(result, result), str(b.get("dock", "?"))[:80]
        failures = b.get("failures")
        if isinstance(failures, int) and not isinstance(failures, bool) and failures:
            text = msg("dock %(dock)s logged in: %(result)s (%(failures)s failures in a row)",
                       dock=dock, result=said, failures=failures)  # fmt: skip
        else:
            text = msg("dock %(dock)s logged in: %(result)s", dock=dock, result=said)
        return "login", text, result
    if t == "export":
        file, dock = str(b.get("file", "?"))[:120], str(b.get("dock", "?"))[:80]
        text = msg("%(file)s sent to dock %(dock)s", file=file, dock=dock)
        return "export", text, ""
    if t == "officer":  # a check-out sealed by the unit (or the holder set by QA)
        to, approver = str(b.get("to", "?"))[:80], str(b.get("approver") or "-")[:80]
        return "checkout", msg("handed to %(officer)s (approved by %(approver)s)",
                               officer=to, approver=approver), ""  # fmt: skip
    if t == "release":
        files = b.get("files")
        n = len(files) if isinstance(files, list) else 0
        text = msg("storage released: %(count)s files, after the dock's receipt %(receipt)s",
                   count=n, receipt=str(b.get("receipt", "?"))[:80])  # fmt: skip
        return "release", text, ""
    return None


def _fault_text(r: Record) -> Msg:
    b = r.body
    if r.type == "power_loss":
        if b.get("file"):
            return msg("power loss (segment %(file)s sealed at recovery)", file=str(b["file"]))
        return msg("power loss")
    what = codes.device(b.get("what") or b.get("cause"))
    reason = b.get("reason")
    if reason:
        return msg("fault: %(device)s (%(reason)s)", device=what, reason=str(reason))
    return msg("fault: %(device)s", device=what)


def _clock_text(r: Record) -> Msg:
    b = r.body
    state = codes.clock_state(b.get("state") or r.stamp.clock_state)
    if b.get("event") == "rtc":
        reason = str(b.get("reason", "?"))
        if b.get("adopted"):
            return msg(
                "clock: real-time clock read at power-on and taken (%(reason)s); clock %(state)s",
                reason=reason,
                state=state,
            )
        return msg(
            "clock: real-time clock read at power-on and refused (%(reason)s); clock %(state)s",
            reason=reason,
            state=state,
        )
    if b.get("event") == "foreign_step":
        step = _number(b.get("system_step_us")) / 1e6
        return msg(
            "clock: the system clock was stepped %(step)+.3f s by something else; ignored",
            step=step,
        )
    if b.get("event") == "expired":
        return msg("clock: holdover expired, clock unverified")
    if "step_us" in b or "after_us" in b:
        stepped = b.get("step_us")
        if stepped is None:
            stepped = _number(b.get("after_us")) - _number(b.get("before_us"))
        return msg(
            "clock stepped %(step)+.3f s from %(source)s; clock %(state)s",
            step=_number(stepped) / 1e6,
            source=codes.clock_source(b.get("source")),
            state=state,
        )
    return msg("clock: %(state)s", state=state)


def _number(v: object) -> float:
    """A chain number, or 0 for anything else (a hostile record is shown, not trusted)."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


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
    notes: list[ResumeNote],
    late: Mapping[str, Any],
    verification: Verification | None,
) -> RecordingView:
    seqs = {r.seq for r in group}
    files = tuple(
        r.body["file"]
        for r in group
        if r.type in ("segment", "still", "power_loss") and isinstance(r.body.get("file"), str)
    )
    mine = [n for n in notes if n.note.seq in seqs]
    last = group[-1]
    if last.type == "record_stop":
        ended = msg("stop (%(cause)s)", cause=codes.cause(last.body.get("cause")))
    elif last.type == "boot":
        ended = msg("reboot")
    elif last.type == "power_loss":
        ended = msg("power loss")
    else:
        ended = msg("still recording when pulled")
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
        ),  # codes: shown through chain_codes.flag
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
    notes: list[ResumeNote],
    late: Mapping[str, Mapping[str, Any]],
    views: list[RecordingView],
    late_after_s: int,
) -> list[Finding]:
    by_seq = {r.seq: r for r in records}
    out = []
    for n in notes:
        if not n.given:
            at = n.resume or n.note  # where it happened: the resume that asked
            out.append(
                Finding(
                    "note_missing",
                    at.stamp.wall_us,
                    n.note.seq,
                    serial,
                    n.note.officer,
                    owner.get(n.note.seq),
                    msg(
                        "resume at record %(resume)s: no spoken reason was heard "
                        "(resume_note record %(note)s)",
                        resume=at.seq,
                        note=n.note.seq,
                    ),
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
                    msg(
                        "%(seconds).1f s with no segment before segment %(segno)s, "
                        "and no pause or stop recorded",
                        seconds=g.seconds,
                        segno=g.before_segno,
                    ),
                )
            )
    limit_h = f"{late_after_s / 3600:g}"
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
                msg(
                    "%(file)s reached the dock %(hours).1f h after it was recorded "
                    "(limit %(limit)s h)",
                    file=f,
                    hours=hours,
                    limit=limit_h,
                ),
            )
        )
    for v in views:
        if v.verification in (FAILED, INCOMPLETE):
            out.append(
                Finding(
                    "not_verified",
                    v.start_us,
                    v.start_seq,
                    serial,
                    v.officer,
                    v.start_seq,
                    msg(
                        "recording %(seq)s: verification %(state)s",
                        seq=v.start_seq,
                        state=VERIFICATION_STATES[v.verification],
                    ),
                )
            )
    return out


def _counts(records: Sequence[Record], notes: list[ResumeNote], late: Mapping[str, Any]) -> Counts:
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
        notes_missing=tuple(n.note.seq for n in notes if not n.given),
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


def day_of(us: int, locale: Locale) -> date:
    """The local date (the dock's zone) of a wall-clock stamp."""
    return zone_day(us, locale)


def day_bounds(d: date, locale: Locale) -> tuple[int, int]:
    """[00:00, 24:00) local time of a day, in microseconds since the epoch."""
    return zone_day_bounds(d, locale)


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
    locale: Locale,
    spans: Iterable[Span],
    events: Iterable[Event],
    findings: Iterable[Finding],
    views: Iterable[RecordingView],
) -> Day:
    lo, hi = day_bounds(d, locale)
    return Day(
        day=d,
        spans=tuple(_clip(spans, lo, hi)),
        events=tuple(e for e in events if lo <= e.at_us < hi),
        findings=tuple(f for f in findings if lo <= f.at_us < hi),
        recordings=tuple(v for v in views if v.end_us >= lo and v.start_us < hi),
    )


def unit_day(unit: UnitCompliance, d: date) -> Day:
    return _day(d, unit.locale, unit.spans, unit.events, unit.findings, unit.recordings)


def seen_by(unit: UnitCompliance, visible: Callable[[str], bool]) -> UnitCompliance:
    """The unit as someone sees it who may see only some of its officers'
    recordings (a unit handed from one officer to another): their
    recordings, spans, events, findings, and the gaps inside their
    recordings; what belongs to no officer they may see is left out."""
    kept = tuple(v for v in unit.recordings if visible(v.officer))
    ranges = [(v.start_seq, v.last_seq) for v in kept]
    return replace(
        unit,
        recordings=kept,
        spans=tuple(x for x in unit.spans if visible(x.officer)),
        events=tuple(x for x in unit.events if visible(x.officer)),
        findings=tuple(x for x in unit.findings if visible(x.officer)),
        gaps=tuple(g for g in unit.gaps if any(a <= g.seq <= b for a, b in ranges)),
    )


def officers(units: Iterable[UnitCompliance]) -> list[str]:
    """Everyone who recorded on these units (the officer of each record_start)."""
    return sorted({v.officer for u in units for v in u.recordings})


def officer_days(units: Sequence[UnitCompliance], officer: str, locale: Locale) -> list[Day]:
    """The officer's days on every unit (local days in `locale`'s zone):
    what their records and recordings show."""
    spans = [s for u in units for s in u.spans if s.officer == officer]
    events = sorted(
        (e for u in units for e in u.events if e.officer == officer), key=lambda e: e.at_us
    )
    findings = sorted(
        (f for u in units for f in u.findings if f.officer == officer), key=lambda f: f.at_us
    )
    views = [v for u in units for v in u.recordings if v.officer == officer]
    days = {day_of(v.start_us, locale) for v in views} | {day_of(v.end_us, locale) for v in views}
    days |= {day_of(f.at_us, locale) for f in findings}
    return [_day(d, locale, spans, events, findings, views) for d in sorted(days)]


# -- reading the dock (read only) ---------------------------------------------


def read_verification(unit_dir: Path) -> tuple[Verification | None, Msg | None]:
    """The pull's verification of this unit, or None and why not."""
    path = unit_dir / VERIFICATION
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, msg("no verification recorded by the dock yet")
    except (OSError, ValueError) as exc:
        return None, msg("%(file)s unreadable: %(error)s", file=VERIFICATION, error=str(exc))
    try:
        return Verification.from_json(data), None
    except ValueError as exc:
        return None, msg("%(file)s unreadable: %(error)s", file=VERIFICATION, error=str(exc))


def read_unit(
    dock_dir: Path,
    serial: str,
    index: Index,
    late_after_s: int = LATE_AFTER_S,
    locale: Locale = DEFAULT_LOCALE,
    lifecycle: Lifecycle | None = None,
) -> UnitCompliance:
    """One unit as the dock holds it, its recordings with their retention
    (`lifecycle`: read here when not given; PolicyError when dock.toml's
    [retention] cannot be used)."""
    try:
        layout.check_serial(serial)  # it names a folder: nothing else may
    except ValueError as exc:
        raise DockUnreadable(str(exc)) from None
    unit_dir = dock_dir / "units" / serial
    try:
        chain = (unit_dir / layout.CHAIN).read_bytes()
        records = [parse_line(line)[0] for line in chain.splitlines()]
    except FileNotFoundError:
        raise DockUnreadable(
            msg("%(serial)s: no copy of its chain on this dock", serial=serial)
        ) from None
    except OSError as exc:
        raise DockUnreadable(
            msg("%(serial)s: %(error)s", serial=serial, error=exc.strerror or str(exc))
        ) from None
    except RecordError as exc:
        raise DockUnreadable(
            msg(
                "%(serial)s: the dock's copy of its chain does not parse: %(error)s",
                serial=serial,
                error=str(exc),
            )
        ) from None
    verification, note = read_verification(unit_dir)
    held = index.held(serial)
    unit = analyse(serial, records, held, verification, late_after_s, note, locale)
    return _kept(unit, lifecycle or Lifecycle.read(dock_dir, index), locale)


@dataclass(frozen=True)
class Lifecycle:
    """What decides how long recordings are kept, read once for a whole dock:
    the policy (dock.toml), the class changes and holds, the disposals."""

    policy: retention.Policy
    changes: dict[tuple[str, int], list[Row]]
    disposed: dict[tuple[str, int], Row]
    cases: dict[tuple[str, int], list[Case]]

    @classmethod
    def read(cls, dock_dir: Path, index: Index) -> Lifecycle:
        """PolicyError: dock.toml's [retention] cannot be used."""
        changes: dict[tuple[str, int], list[Row]] = {}
        for row in index.retention_changes():
            changes.setdefault((row["serial"], row["recording"]), []).append(row)
        disposed = {(r["serial"], r["recording"]): r for r in index.disposals()}
        filed = cases_by_recording(index.case_recordings(), index.cases())
        return cls(retention.load_policy(dock_dir), changes, disposed, filed)


def _kept(unit: UnitCompliance, life: Lifecycle, locale: Locale) -> UnitCompliance:
    """Each recording with its class, expiry, holds and disposal."""
    views = []
    for v in unit.recordings:
        key = (unit.serial, v.start_seq)
        s = retention.standing(
            v.marks, day_of(v.start_us, locale), life.changes.get(key, []), life.policy
        )
        views.append(replace(v, retention=s.cls, expires=s.expires, holds=s.holds,
                             disposed=life.disposed.get(key),
                             cases=tuple(life.cases.get(key, ()))))  # fmt: skip
    return replace(unit, recordings=tuple(views))


@dataclass(frozen=True)
class DockView:
    """What a dock's index names: the units read, and those that could not be
    (an agency index names units whose chain another dock holds)."""

    units: tuple[UnitCompliance, ...]
    unreadable: tuple[tuple[str, Msg | str], ...] = ()  # (serial, why)


def read_dock(
    dock_dir: Path, index: Index, late_after_s: int = LATE_AFTER_S, locale: Locale = DEFAULT_LOCALE
) -> DockView:
    """Every unit the index names, in serial order, from the chains this dock
    holds, each recording with its retention (PolicyError: dock.toml's
    [retention] cannot be used)."""
    life = Lifecycle.read(dock_dir, index)
    units, unreadable = [], []
    for serial in index.serials():
        try:
            units.append(read_unit(dock_dir, serial, index, late_after_s, locale, life))
        except DockUnreadable as exc:
            unreadable.append((serial, exc.args[0]))
    return DockView(tuple(units), tuple(unreadable))
