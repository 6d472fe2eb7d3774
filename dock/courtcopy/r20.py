"""What S2 art. 12 (R20) asks of a recording used as evidence: the officer,
who made the copy, start and end, place, the device's make and model,
format and length. Gathered here once, from the chain and the joined copy,
for the report (HTML, PDF), manifest.json, the C2PA assertion and the MP4's
own metadata.

The make and model are the unit's word, sealed in its chain: the last
`genesis` or `boot` record at or before the recording that carries them,

    "make": "...", "model": "..."        (or "device": {"make": ..., "model": ...})

and "not recorded" when none does (units flashed before they were sealed).
The place is dock/places.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sealing.recordings import Recording, utc_text
from sealing.records import Record

from ..places import Places, Position, places
from ..texts import Msg, Texts, msg
from .media import Joined

DEVICE_RECORDS = ("genesis", "boot")
MAX_DEVICE_TEXT = 64


@dataclass(frozen=True)
class Device:
    make: str | None
    model: str | None
    record: int | None  # the chain record that says so


def device_of(chain: Sequence[Record], at_seq: int) -> Device:
    """The make and model the chain states at record `at_seq`."""
    for r in reversed([r for r in chain if r.seq <= at_seq and r.type in DEVICE_RECORDS]):
        b = r.body
        nested = b.get("device")
        inner = nested if isinstance(nested, dict) else b
        make, model = _text(inner.get("make")), _text(inner.get("model"))
        if make is not None or model is not None:
            return Device(make, model, r.seq)
    return Device(None, None, None)


def _text(v: object) -> str | None:
    if isinstance(v, str) and v.strip() and v.isprintable() and len(v) <= MAX_DEVICE_TEXT:
        return v
    return None


@dataclass(frozen=True)
class R20:
    officer: str
    examiner: str  # "" when the copy was made without one (a library call)
    start_us: int
    end_us: int
    places: Places
    device: Device
    codecs: tuple[str, ...]
    duration_us: int

    def facts(self, t: Texts) -> dict[str, Any]:
        """For manifest.json and the C2PA assertion: UTC and local, codes and words."""
        first = self.places.first
        return {
            "officer": self.officer,
            "examiner": self.examiner or None,
            "started_utc": utc_text(self.start_us, ms=True),
            "ended_utc": utc_text(self.end_us, ms=True),
            "started_local": t.time_no_zone(self.start_us),
            "ended_local": t.time_no_zone(self.end_us),
            "timezone": t.zone_name,
            "place": {
                "first": _position(first) if first else None,
                "last": _position(self.places.last) if self.places.last else None,
                "media_records_with_position": len(self.places.positions),
                "media_records_without": len(self.places.without),
                "why_none": (
                    None
                    if first
                    else {
                        "code": self.places.without[0].code if self.places.without else None,
                        "text": t.say(self.places.why_none()),
                    }
                ),
            },
            "device": {
                "make": self.device.make,
                "model": self.device.model,
                "record": self.device.record,
            },
            "format": {"container": "mp4", "codecs": list(self.codecs)},
            "length_s": round(self.duration_us / 1e6, 3),
        }

    def place_text(self) -> Msg:
        first, last = self.places.first, self.places.last
        if first is None or last is None:
            return self.places.why_none()
        if (first.lat_e7, first.lon_e7) == (last.lat_e7, last.lon_e7):
            return first.text()
        return msg("from %(first)s to %(last)s", first=first.text(), last=last.text())

    def make_text(self) -> Msg | str:
        return self.device.make or msg("not recorded")

    def model_text(self) -> Msg | str:
        return self.device.model or msg("not recorded")

    def format_text(self) -> Msg:
        codecs = ", ".join(c.upper() if c in ("h264", "aac") else c for c in self.codecs)
        return msg(
            "MP4 (%(codecs)s), copied from the unit's MPEG-TS without re-encoding", codecs=codecs
        )


def mp4_tags(rec: Recording, chain: Sequence[Record], examiner: str, t: Texts) -> dict[str, str]:
    """The MP4's own metadata, from the chain (written before the join, so
    not from it): ffprobe shows title, creation_time, location, make, model
    and a comment naming the unit, the officer and who made the copy."""
    start = rec.start
    device = device_of(chain, start.seq)
    first = places(rec.records).first
    tags = {
        "title": t.tr(
            "%(serial)s recording %(seq)s, %(start)s",
            serial=start.serial,
            seq=start.seq,
            start=t.time(start.stamp.wall_us),
        ),
        "creation_time": datetime.fromtimestamp(start.stamp.wall_us / 1e6, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        ),
        "make": device.make or t.tr("not recorded"),
        "model": device.model or t.tr("not recorded"),
        "comment": t.tr(
            "unit %(serial)s, officer %(officer)s; copy made by %(examiner)s",
            serial=start.serial,
            officer=start.officer,
            examiner=examiner or t.tr("(not named)"),
        ),
    }
    if first is not None:
        tags["location"] = first.iso6709()
    return tags


def r20_of(rec: Recording, chain: Sequence[Record], joined: Joined, examiner: str) -> R20:
    start = rec.start
    return R20(
        officer=start.officer,
        examiner=examiner,
        start_us=start.stamp.wall_us,
        end_us=end_of(rec),
        places=places(rec.records),
        device=device_of(chain, start.seq),
        codecs=joined.codecs,
        duration_us=joined.duration_us,
    )


def end_of(rec: Recording) -> int:
    """The stop's time; for a recording cut by a reboot or power loss (or
    still running), the last moment it recorded."""
    end = rec.end
    if end is not None and end.type == "record_stop":
        return end.stamp.wall_us
    moments = [r.stamp.wall_us for r in rec.records if r is not end]
    moments += [
        r.body["end"]["wall_us"]
        for r in rec.records
        if isinstance(r.body.get("end"), dict) and isinstance(r.body["end"].get("wall_us"), int)
    ]
    return max(moments)


def _position(p: Position) -> dict[str, Any]:
    return {
        "lat_e7": p.lat_e7,
        "lon_e7": p.lon_e7,
        "iso6709": p.iso6709(),
        "accuracy_m": p.accuracy_m,
        "fix_utc": utc_text(p.fix_wall_us) if p.fix_wall_us is not None else None,
        "source": p.source,
        "record": p.record,
    }
