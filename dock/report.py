"""The dock's compliance report as text (R22): the facts are
dock/compliance/model.py's, the same the supervisors' page shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .index import Index


def report(
    dock_dir: Path, late_after_s: int = 24 * 3600, *, index: str | Path | None = None
) -> str:
    """`index`: the index's file or URL (default the dock's dock.sqlite); an
    agency index reports every dock's rows. The facts are dock/compliance/model.py's,
    the same the supervisors' page shows."""
    from .compliance import model as compliance

    db = Index.open(index or dock_dir / "dock.sqlite", dock=None)
    try:
        view = compliance.read_dock(dock_dir, db, late_after_s)
    finally:
        db.close()
    out: list[str] = []
    for unit in view.units:
        out += _unit_report(unit)
    out += [f"unit {serial}: not reported here: {why}" for serial, why in view.unreadable]
    return "\n".join(out) if out else "no units pulled yet"


def _unit_report(u: Any) -> list[str]:
    """The text lines of one unit (a compliance.UnitCompliance)."""
    c = u.counts
    gaps = [
        f"{g.seconds:.1f} s before segment {g.before_segno} ({g.explained_by or 'UNEXPLAINED'})"
        for g in u.gaps
    ]
    unexplained = sum(g.explained_by is None for g in u.gaps)
    missing = ", ".join(str(seq) for seq in c.notes_missing)
    states = sorted({v.verification for v in u.recordings})
    verified = ", ".join(f"{sum(v.verification == s for v in u.recordings)} {s}" for s in states)
    return [
        f"unit {u.serial} (officer {u.officer}, chain 0..{u.head_seq})",
        f"  recordings   {c.started} started, {c.segments} segments ({c.segment_s:.0f} s), "
        f"{c.stills} stills",
        f"  gaps         {len(gaps)}, {unexplained} unexplained"
        + (f": {', '.join(gaps[:5])}" if gaps else ""),
        f"  pauses       {c.pauses} ({', '.join(c.pause_reasons)})",
        f"  resume notes {c.notes_given} given, {len(c.notes_missing)} missing"
        + (f" (records {missing})" if missing else ""),
        f"  clock        {c.unverified_records} records unverified, {c.clock_records} steps",
        f"  faults       {len(c.faults)}" + (f": {', '.join(c.faults[:6])}" if c.faults else ""),
        f"  late export  {len(c.late)} segments exported more than "
        f"{u.late_after_s // 3600} h after recording",
        f"  unmarked     {len(u.findings_of('unmarked'))} of {len(u.recordings)} recordings "
        "have no evidence mark",
        f"  verification {verified or 'no recordings'}"
        + (f" ({u.verification_note})" if u.verification_note else ""),
    ]
