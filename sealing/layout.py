"""Where things live in a sealed store, and how files are named.

    <store>/
      LOCK                 flock(2) held by the one writer
      chain.jsonl          the chain, one record per line
      device_ed25519.pub   the unit's public key (PEM), copied for verifiers
      segments/            <serial>_<YYYYMMDD>T<HHMMSS>Z_<segno:06>.<ext>.age
                           (+ ".partial" while being written)
      receipts/            <receipt id>.json, every receipt the unit applied

A dock files segments by year/month/day from the date in the name (R21).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

CHAIN = "chain.jsonl"
RESERVE = "reserve"  # zeros kept for the records a full disk still needs (docs/FORMAT.md)
LOCK = "LOCK"
DEVICE_PUB = "device_ed25519.pub"
SEGMENTS = "segments"
RECEIPTS = "receipts"
PARTIAL = ".partial"
KIND_BY_EXT = {"ts": "segment", "jpg": "still"}
# fullmatch, ASCII digits: "$" would let a trailing newline through, "\d" other scripts' digits
SERIAL_RE = re.compile(r"[A-Z0-9][A-Z0-9-]{2,31}")
_NAME_RE = re.compile(
    r"(?P<serial>[A-Z0-9][A-Z0-9-]{2,31})_(?P<date>[0-9]{8})T(?P<time>[0-9]{6})Z_"
    r"(?P<segno>[0-9]{6,})\.(?P<ext>ts|jpg)\.age"
)


@dataclass(frozen=True)
class SegmentName:
    serial: str
    wall_us: int
    segno: int
    ext: str

    @property
    def kind(self) -> str:
        return KIND_BY_EXT[self.ext]

    def __str__(self) -> str:
        when = datetime.fromtimestamp(self.wall_us / 1e6, UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{self.serial}_{when}_{self.segno:06d}.{self.ext}.age"

    @property
    def day_dir(self) -> str:
        """The dock's YYYY/MM/DD folder for this file."""
        d = str(self).split("_")[1]
        return f"{d[0:4]}/{d[4:6]}/{d[6:8]}"


def parse_name(name: str) -> SegmentName | None:
    m = _NAME_RE.fullmatch(name.removesuffix(PARTIAL))
    # one name per number: from 1, six digits, more only when it needs them
    if not m or int(m["segno"]) < 1 or m["segno"] != f"{int(m['segno']):06d}":
        return None
    try:
        when = datetime.strptime(m["date"] + m["time"], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return SegmentName(m["serial"], int(when.timestamp() * 1_000_000), int(m["segno"]), m["ext"])


def check_serial(serial: str) -> str:
    if not isinstance(serial, str) or not SERIAL_RE.fullmatch(serial):
        raise ValueError(
            f"serial {serial!r}: want 3-32 of A-Z, 0-9 and '-', starting with a letter or digit"
        )
    return serial


def store_paths(root: Path) -> dict[str, Path]:
    return {
        "chain": root / CHAIN,
        "lock": root / LOCK,
        "pub": root / DEVICE_PUB,
        "segments": root / SEGMENTS,
        "receipts": root / RECEIPTS,
    }
