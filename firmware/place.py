"""Where a media record was made (R8, R20): the last GPS fix it covers, or
why there is none. Pure: the runtime feeds it fixes and asks it for the
`location` of each segment and still record (docs/FORMAT.md section 4).

A record covers the fixes taken up to its end; the last of them is its
place, unless it was taken more than STALE_US before the record began (the
officer may have walked far since): then the record says `stale` and how
old the fix was. No receiver fitted, a receiver that failed, and no fix yet
are said as such, so an examiner never meets a silent null.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

STALE_US = 60_000_000  # a fix older than this before the record began is not its place
SOURCE = "gps"
KEPT = 32  # fixes kept: half a minute at one a second


@dataclass(frozen=True)
class Taken:
    position: dict[str, int]  # lat_e7, lon_e7, quality, satellites
    mono_us: int
    wall_us: int | None  # the fix's own UTC, when it carried one


@dataclass
class Fixes:
    """The last positions the receiver gave (a segment is sealed a moment
    after it ends: the fix it covers may not be the newest one)."""

    fitted: bool  # a GPS receiver is configured on this unit
    recent: deque[Taken] = field(default_factory=lambda: deque(maxlen=KEPT))

    def took(self, position: dict[str, int], mono_us: int, wall_us: int | None) -> None:
        self.recent.append(Taken(dict(position), mono_us, wall_us))

    def location(self, start_us: int, end_us: int, *, failed: bool = False) -> dict[str, Any]:
        """The `location` body of a record spanning [start_us, end_us] (mono)."""
        if not self.fitted:
            return {"reason": "no_gps"}
        covered = [t for t in self.recent if t.mono_us <= end_us]
        if not covered:
            return {"reason": "gps_fault" if failed else "no_fix"}
        last = covered[-1]
        age = start_us - last.mono_us
        if age > STALE_US:
            return {"reason": "gps_fault" if failed else "stale", "fix_age_us": age}
        out: dict[str, Any] = {**last.position, "fix_mono_us": last.mono_us, "source": SOURCE}
        if last.wall_us is not None:
            out["fix_wall_us"] = last.wall_us
        return out
