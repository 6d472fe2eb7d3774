"""What a recording is, in the chain's own terms: the one definition the
unit's status, the verifier, the dock's page and the court copy share
(the record types are in docs/FORMAT.md §4; the rule is this module's).

A recording starts at a `record_start` record and runs, pauses included, to
its `record_stop`, or to the `power_loss` or `boot` record that shows the
power went away while it ran. Its media are its `segment` and `still`
records, and a `power_loss` record that names the segment it sealed when the
store was recovered.

Which `resume_note` judges which `resume` is decided here too, by the
chain's own links and never by equal timestamps (a live unit stamps the note
window with the button press and the resume record a few ms later):
`resume_notes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .records import Record

MEDIA_TYPES = ("segment", "still")
ENDS = ("record_stop", "boot", "power_loss")  # what ends a recording
IDLE, RECORDING, PAUSED = "idle", "recording", "paused"


def is_media(type_: str, body: dict[str, Any]) -> bool:
    """A record that names a sealed file (a receipt lists it; the dock pulls it)."""
    return type_ in MEDIA_TYPES or (type_ == "power_loss" and "file" in body)


def media_records(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if is_media(r.type, r.body)]


@dataclass(frozen=True)
class Recording:
    records: tuple[Record, ...]  # its record_start .. its end, in chain order

    @property
    def start(self) -> Record:
        return self.records[0]

    @property
    def end(self) -> Record | None:
        """What ended it; None while it was still running when the chain was read."""
        last = self.records[-1]
        return last if last.type in ENDS else None

    def media(self, suffix: str = "") -> list[Record]:
        """Its media records whose file name ends in `suffix` (".ts.age": video)."""
        return [r for r in media_records(self.records) if str(r.body["file"]).endswith(suffix)]


def recordings(records: Iterable[Record]) -> list[Recording]:
    """The recordings in a chain, in order. Records before the first
    `record_start` and between a recording's end and the next start belong to
    none."""
    out: list[Recording] = []
    current: list[Record] | None = None
    for r in records:
        if r.type == "record_start":
            if current:  # a start without an end before it: the chain says no more
                out.append(Recording(tuple(current)))
            current = [r]
        elif current is not None:
            current.append(r)
            if r.type in ENDS:
                out.append(Recording(tuple(current)))
                current = None
    if current:
        out.append(Recording(tuple(current)))
    return out


def state_after(records: Iterable[Record]) -> str:
    """Idle, recording or paused, as the records leave the unit."""
    state = IDLE
    for r in records:
        if r.type in ("record_start", "resume"):
            state = RECORDING
        elif r.type == "pause":
            state = PAUSED if state != IDLE else IDLE
        elif r.type in ENDS:
            state = IDLE
    return state


# What closes a resume's note window: the unit writes the note before any of
# these (docs/STATES.md, invariants), so a note after one is not that resume's.
NOTE_WINDOW_ENDS = ("resume", "pause", "record_start", *ENDS)


@dataclass(frozen=True)
class ResumeNote:
    """A `resume_note` record and the `resume` it judges; `resume` is None
    when the chain links it to none (no resume before it in its window)."""

    note: Record
    resume: Record | None

    @property
    def given(self) -> bool:
        return self.note.body.get("given") is True


def resume_notes(records: Sequence[Record]) -> list[ResumeNote]:
    """Every `resume_note` of `records` (in chain order) with its resume.

    A note that names its resume (`resume`: that record's seq) belongs to
    it, if that record is a resume not already judged; a note naming
    anything else belongs to none. A note that names nothing belongs to the
    last resume before it, if no pause, resume, start, stop, boot or power
    loss lies between them and that resume has no note yet.
    """
    resumes = {r.seq: r for r in records if r.type == "resume"}
    judged: set[int] = set()
    out: list[ResumeNote] = []
    waiting: Record | None = None
    for r in records:
        if r.type == "resume_note":
            named = r.body.get("resume")
            if named is not None:
                target = resumes.get(named) if _is_seq(named) else None
                if target is not None and target.seq < r.seq and target.seq not in judged:
                    resume: Record | None = target
                else:
                    resume = None
            else:
                resume = waiting if waiting is not None and waiting.seq not in judged else None
            if resume is not None:
                judged.add(resume.seq)
            out.append(ResumeNote(r, resume))
            waiting = None
        elif r.type in NOTE_WINDOW_ENDS:
            waiting = r if r.type == "resume" else None
    return out


def note_of(records: Sequence[Record]) -> dict[int, ResumeNote]:
    """resume seq -> its note, for the resumes that have one."""
    return {n.resume.seq: n for n in resume_notes(records) if n.resume is not None}


def _is_seq(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def utc_text(us: int, *, ms: bool = False) -> str:
    """The one way a chain's UTC microseconds are written for people who
    read UTC: `2026-12-02T01:40:31Z` (or `...31.123Z`); a time no calendar
    holds (a hostile or broken record) as its number."""
    try:
        when = datetime.fromtimestamp(us / 1e6, UTC)
    except (ValueError, OverflowError, OSError):
        return f"{us} us"
    return when.isoformat(timespec="milliseconds" if ms else "seconds").replace("+00:00", "Z")
