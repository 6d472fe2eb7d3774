"""EXIF for stills: who, when and where, written into the JPEG the camera gave
without re-encoding it (an APP1 segment placed after SOI, any EXIF the camera
wrote replaced), so the picture's pixels stay exactly the camera's.

DateTimeOriginal is UTC (OffsetTimeOriginal "+00:00", sub-seconds in
SubSecTimeOriginal); BodySerialNumber is the unit's serial; Artist is the
officer; ImageDescription says how far the unit vouched for its clock
("clock=synced source=gps"); the GPS IFD is written only with a fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

from PIL import Image

SOI, APP1 = b"\xff\xd8", b"\xff\xe1"
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
ARTIST, MAKE, MODEL, DESCRIPTION, SOFTWARE = 0x013B, 0x010F, 0x0110, 0x010E, 0x0131
DATETIME_ORIGINAL, OFFSET_ORIGINAL, SUBSEC_ORIGINAL = 0x9003, 0x9011, 0x9291
BODY_SERIAL = 0xA431


@dataclass(frozen=True)
class StillInfo:
    utc_us: int
    clock_state: str
    clock_source: str
    serial: str
    officer: str
    lat_e7: int | None = None  # degrees x 1e7, as the chain keeps them
    lon_e7: int | None = None


def _dms(e7: int) -> tuple[Fraction, Fraction, Fraction]:
    """Degrees x 1e7 as EXIF's degrees, minutes, seconds (rationals)."""
    deg, rest = divmod(abs(e7), 10_000_000)
    minutes, rest = divmod(rest * 60, 10_000_000)
    return Fraction(deg), Fraction(minutes), Fraction(rest * 60, 10_000_000)


def exif_bytes(info: StillInfo) -> bytes:
    exif = Image.Exif()
    when = datetime.fromtimestamp(info.utc_us // 1_000_000, UTC)
    exif[ARTIST] = info.officer
    exif[MAKE] = "bodycam"
    exif[MODEL] = "bodycam firmware companion"
    exif[DESCRIPTION] = f"clock={info.clock_state} source={info.clock_source}"
    sub: dict[int, object] = {}
    sub[DATETIME_ORIGINAL] = when.strftime("%Y:%m:%d %H:%M:%S")
    sub[OFFSET_ORIGINAL] = "+00:00"
    sub[SUBSEC_ORIGINAL] = f"{info.utc_us % 1_000_000:06d}"
    sub[BODY_SERIAL] = info.serial
    exif[EXIF_IFD] = sub
    if info.lat_e7 is not None and info.lon_e7 is not None:
        gps: dict[int, object] = {}
        gps[0] = b"\x02\x03\x00\x00"  # GPSVersionID 2.3
        gps[1] = "N" if info.lat_e7 >= 0 else "S"
        gps[2] = _dms(info.lat_e7)
        gps[3] = "E" if info.lon_e7 >= 0 else "W"
        gps[4] = _dms(info.lon_e7)
        exif[GPS_IFD] = gps
    return exif.tobytes()  # starts with b"Exif\0\0"


def with_exif(jpeg: bytes, info: StillInfo) -> bytes:
    """`jpeg` with our EXIF as its first segment and the camera's APP1 EXIF dropped."""
    if not jpeg.startswith(SOI):
        raise ValueError("not a JPEG: no start-of-image marker")
    payload = exif_bytes(info)
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("EXIF too large for one APP1 segment")
    rest, i = bytearray(), 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF and jpeg[i + 1] not in (0xDA, 0xD9):
        size = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        segment = jpeg[i : i + 2 + size]
        if not (segment[:2] == APP1 and segment[4:10] == b"Exif\0\0"):
            rest += segment
        i += 2 + size
    app1 = APP1 + (len(payload) + 2).to_bytes(2, "big") + payload
    return SOI + app1 + bytes(rest) + jpeg[i:]
