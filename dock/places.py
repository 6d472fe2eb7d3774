"""Where a recording was made (R8, R20), as its records say it: each
`segment` and `still` record carries `location`, the last GPS fix it covers
or why there is none. What is read (everything else is ignored):

    "location": {"lat_e7": 312304000, "lon_e7": 1214737000,   # degrees x 1e7
                 "accuracy_m": 4.5,          # optional: estimated horizontal error
                 "fix_wall_us": 1796000000000000,  # optional: when the fix was taken
                 "source": "gps"}            # optional
    "location": {"reason": "no_fix"}         # no position: why (no_gps, no_fix, stale, ...)
    "location": null                         # older units: nothing said

A value that is not of this shape is reported as unreadable, never guessed
at: a record from the chain is not trusted for more than it says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeGuard

from sealing.records import Record

from .texts import Msg, msg

MEDIA = ("segment", "still")
REASONS: dict[str, Msg] = {
    "no_gps": msg("no GPS receiver fitted"),
    "no_fix": msg("no GPS fix yet"),
    "stale": msg("the last fix was too old"),
    "gps_fault": msg("the GPS receiver failed"),
}
LAT_LIMIT, LON_LIMIT = 90 * 10**7, 180 * 10**7


@dataclass(frozen=True)
class Position:
    lat_e7: int
    lon_e7: int
    accuracy_m: float | None
    fix_wall_us: int | None
    source: str | None
    record: int  # the seq of the record that carries it

    @property
    def lat(self) -> float:
        return self.lat_e7 / 1e7

    @property
    def lon(self) -> float:
        return self.lon_e7 / 1e7

    def iso6709(self) -> str:
        """`+31.23040+121.47370/`: the MP4 `location` tag (ISO 6709, degrees)."""
        return f"{self.lat:+09.5f}{self.lon:+010.5f}/"

    def text(self) -> Msg:
        """For people: `31.2304000° N, 121.4737000° E`, with its accuracy."""
        if self.lat >= 0:
            lat = msg("%(deg).7f° N", deg=self.lat)
        else:
            lat = msg("%(deg).7f° S", deg=-self.lat)
        if self.lon >= 0:
            lon = msg("%(deg).7f° E", deg=self.lon)
        else:
            lon = msg("%(deg).7f° W", deg=-self.lon)
        if self.accuracy_m is not None:
            return msg("%(lat)s, %(lon)s (within %(m).0f m)", lat=lat, lon=lon, m=self.accuracy_m)
        return msg("%(lat)s, %(lon)s", lat=lat, lon=lon)


@dataclass(frozen=True)
class NoPosition:
    """A record without a position, and why (a Msg for people, the code as recorded)."""

    why: Msg | str  # a known reason, or the unit's own words
    code: str
    record: int


def place_of(r: Record) -> Position | NoPosition:
    """The place one media record states."""
    loc = r.body.get("location")
    if loc is None:
        return NoPosition(msg("the record carries no location"), "none", r.seq)
    if not isinstance(loc, dict):
        return NoPosition(msg("the record's location is unreadable"), "unreadable", r.seq)
    lat, lon = loc.get("lat_e7"), loc.get("lon_e7")
    if _int(lat) and _int(lon) and abs(lat) <= LAT_LIMIT and abs(lon) <= LON_LIMIT:
        acc, fix, source = loc.get("accuracy_m"), loc.get("fix_wall_us"), loc.get("source")
        return Position(
            lat,
            lon,
            float(acc) if _number(acc) and acc >= 0 else None,
            fix if _int(fix) else None,
            source if isinstance(source, str) and source.isprintable() else None,
            r.seq,
        )
    reason = loc.get("reason")
    if lat is None and lon is None and isinstance(reason, str) and reason.isprintable():
        return NoPosition(REASONS.get(reason, reason[:80]), reason, r.seq)
    return NoPosition(msg("the record's location is unreadable"), "unreadable", r.seq)


@dataclass(frozen=True)
class Places:
    """The places a recording's media records state."""

    positions: tuple[Position, ...]
    without: tuple[NoPosition, ...]

    @property
    def first(self) -> Position | None:
        return self.positions[0] if self.positions else None

    @property
    def last(self) -> Position | None:
        return self.positions[-1] if self.positions else None

    def why_none(self) -> Msg:
        """Why no position: the first reason recorded, or that none was."""
        if not self.without:
            return msg("no position recorded (the recording has no media records)")
        return msg("no position recorded (%(why)s)", why=self.without[0].why)


def places(records: Iterable[Record]) -> Places:
    found = [place_of(r) for r in records if r.type in MEDIA]
    return Places(
        tuple(p for p in found if isinstance(p, Position)),
        tuple(p for p in found if isinstance(p, NoPosition)),
    )


def _int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool)
