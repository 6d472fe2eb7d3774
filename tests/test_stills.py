"""Stills carry EXIF (UTC time, serial, officer, clock state, GPS with a fix),
added without touching the camera's pixels; checked on a sealed still taken
through the recorder and read back with Pillow."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from capture.stills import BODY_SERIAL, DATETIME_ORIGINAL, EXIF_IFD, GPS_IFD, StillInfo, with_exif
from firmware.recording import run_scenario
from firmware.scenario import parse
from hal.camera_sim import SimCamera
from sealing.age import decrypt
from sealing.verify import verify_store

from .conftest import make_unit


def test_a_sealed_still_says_when_who_and_how_sure(tmp_path) -> None:
    unit = make_unit(tmp_path / "unit")
    run_scenario(
        unit.path,
        parse(
            {
                "seconds": 6,
                "size": "320x180",
                "clock": "synced",
                "prerecord_seconds": 0,
                "at": [
                    {"t": 1, "press": "record"},
                    {"t": 2, "press": "photo"},
                    {"t": 3, "hold": "record"},
                ],
            },
            tmp_path,
        ),
        log=lambda line: None,
    )
    stills = [r for r in verify_store(unit.path).records if r["type"] == "still"]
    assert len(stills) == 1
    rec = stills[0]
    plain = io.BytesIO()
    with (unit.path / "store" / "segments" / rec["body"]["file"]).open("rb") as f:
        assert decrypt(f, unit.agency.identity, plain).complete
    im = Image.open(plain)
    im.load()
    exif = im.getexif()
    sub = exif.get_ifd(EXIF_IFD)
    start = rec["body"]["start"]["wall_us"]
    assert sub[DATETIME_ORIGINAL] == datetime.fromtimestamp(start // 10**6, UTC).strftime(
        "%Y:%m:%d %H:%M:%S"
    )
    assert sub[0x9011] == "+00:00" and sub[0x9291] == f"{start % 10**6:06d}"
    assert sub[BODY_SERIAL] == "BC-TEST-0001" and exif[0x013B] == rec["officer"]
    assert exif[0x010E] == f"clock=synced source={rec['clock']['source']}"
    assert not exif.get_ifd(GPS_IFD)  # no fix, no position


def test_exif_keeps_pixels_replaces_old_exif_and_writes_gps() -> None:
    jpeg = SimCamera(320, 180).still()
    info = StillInfo(
        1_795_415_954_314_151, "holdover", "dock", "BC-1", "OFFICER-7", -335_000_000, 1_512_345_678
    )
    once = with_exif(jpeg, info)
    twice = with_exif(once, info)
    assert twice.count(b"Exif\x00\x00") == 1  # the earlier EXIF is replaced, not stacked
    a, b = (np.asarray(Image.open(io.BytesIO(x))) for x in (jpeg, twice))
    assert (a == b).all()
    gps = Image.open(io.BytesIO(twice)).getexif().get_ifd(GPS_IFD)
    assert gps[1] == "S" and gps[3] == "E"
    lat = sum(float(v) / 60**i for i, v in enumerate(gps[2]))
    lon = sum(float(v) / 60**i for i, v in enumerate(gps[4]))
    assert abs(lat - 33.5) < 1e-6 and abs(lon - 151.2345678) < 1e-6
    with pytest.raises(ValueError, match="not a JPEG"):
        with_exif(b"GIF89a", info)
