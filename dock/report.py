"""The dock's compliance report as text (R22): the facts are
dock/compliance/model.py's, the same the supervisors' page shows, in the
reader's language (`Texts`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import chain_codes as codes
from .dock_locale import dock_locale
from .index import Index
from .texts import Texts, load_texts, msg


def report(
    dock_dir: Path,
    texts: Texts | None = None,
    late_after_s: int = 24 * 3600,
    *,
    index: str | Path | None = None,
) -> str:
    """`index`: the index's file or URL (default the dock's dock.sqlite); an
    agency index reports every dock's rows. The facts are dock/compliance/model.py's,
    the same the supervisors' page shows; words and times are `texts`' (by
    default the dock's language and zone, dock.toml)."""
    from .compliance import model as compliance

    texts = texts or load_texts(dock_locale(dock_dir))

    db = Index.open(index or dock_dir / "dock.sqlite", dock=None)
    try:
        view = compliance.read_dock(dock_dir, db, late_after_s, texts.locale)
    finally:
        db.close()
    out: list[str] = []
    for unit in view.units:
        out += _unit_report(unit, texts)
    out += [
        texts.tr("unit %(serial)s: not reported here: %(why)s", serial=s, why=texts.say(why))
        for s, why in view.unreadable
    ]
    return "\n".join(out) if out else texts.tr("no units pulled yet")


def _unit_report(u: Any, t: Texts) -> list[str]:
    """The text lines of one unit (a compliance.UnitCompliance)."""
    from .compliance.model import VERIFICATION_STATES

    c = u.counts
    gaps = [
        t.tr(
            "%(seconds).1f s before segment %(segno)s (%(why)s)",
            seconds=g.seconds,
            segno=g.before_segno,
            why=g.explained_by if g.explained_by is not None else t.tr("UNEXPLAINED"),
        )
        for g in u.gaps
    ]
    unexplained = sum(g.explained_by is None for g in u.gaps)
    states = sorted({v.verification for v in u.recordings})
    verified = t.tr(", ").join(
        t.tr(
            "%(count)s %(state)s",
            count=sum(v.verification == s for v in u.recordings),
            state=VERIFICATION_STATES[s],
        )
        for s in states
    )
    reasons = t.tr(", ").join(t.say(codes.cause(r)) for r in c.pause_reasons)
    faults = [t.say(_fault(f)) for f in c.faults]
    first = t.tr(
        "unit %(serial)s (officer %(officer)s, chain 0..%(head)s); times in %(zone)s",
        serial=u.serial,
        officer=u.officer,
        head=u.head_seq,
        zone=t.zone_name,
    )
    return [
        first,
        "  "
        + t.tr(
            "recordings: %(started)s started, %(segments)s segments (%(seconds).0f s), "
            "%(stills)s stills",
            started=c.started,
            segments=c.segments,
            seconds=c.segment_s,
            stills=c.stills,
        ),
        "  "
        + t.tr(
            "gaps: %(gaps)s, %(unexplained)s unexplained", gaps=len(gaps), unexplained=unexplained
        )
        + (t.tr(": ") + t.tr(", ").join(gaps[:5]) if gaps else ""),
        "  " + t.tr("pauses: %(pauses)s (%(reasons)s)", pauses=c.pauses, reasons=reasons),
        "  " + _notes_line(t, c.notes_given, c.notes_missing),
        "  "
        + t.tr(
            "clock: %(unverified)s records unverified, %(steps)s steps",
            unverified=c.unverified_records,
            steps=c.clock_records,
        ),
        "  "
        + t.tr("faults: %(count)s", count=len(faults))
        + (t.tr(": ") + t.tr(", ").join(faults[:6]) if faults else ""),
        "  "
        + t.tr(
            "late export: %(count)s segments exported more than %(hours)s h after recording",
            count=len(c.late),
            hours=u.late_after_s // 3600,
        ),
        "  "
        + t.tr(
            "retention: %(evidence)s of %(total)s recordings marked as evidence, %(held)s held",
            evidence=sum(v.retention != "supervision" for v in u.recordings),
            total=len(u.recordings),
            held=sum(bool(v.holds) for v in u.recordings),
        ),
        "  "
        + t.tr("verification: %(states)s", states=verified or t.tr("no recordings"))
        + (f" ({t.say(u.verification_note)})" if u.verification_note else ""),
        *_recording_lines(u, t),
    ]


def _notes_line(t: Texts, given: int, missing: tuple[int, ...]) -> str:
    if not missing:
        return t.tr(
            "spoken reasons on resuming: %(given)s given, %(missing)s missing",
            given=given,
            missing=0,
        )
    return t.tr(
        "spoken reasons on resuming: %(given)s given, %(missing)s missing (records %(seqs)s)",
        given=given,
        missing=len(missing),
        seqs=t.tr(", ").join(str(seq) for seq in missing),
    )


def _fault(text: str) -> Any:
    """`fault:camera` or `power_loss:partial_segment` from Counts.faults."""
    kind, _, what = text.partition(":")
    if kind == "power_loss":
        return msg("power loss (%(cause)s)", cause=what)
    if kind == "stall":  # `stall:camera+microphone`: the parts that took nothing in
        return msg("stall (%(parts)s)", parts=what)
    return codes.device(what)


def _recording_lines(u: Any, t: Texts) -> list[str]:
    """One line per recording: when, in the dock's zone."""
    return [
        "  "
        + t.tr(
            "recording %(seq)s: %(start)s to %(end)s, officer %(officer)s",
            seq=v.start_seq,
            start=t.time_no_zone(v.start_us),
            end=t.time_no_zone(v.end_us),
            officer=v.officer,
        )
        for v in u.recordings
    ]
