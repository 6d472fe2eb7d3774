"""A place on every media record (R8, R20; docs/FORMAT.md section 4.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.devices import parse_devices
from firmware.place import STALE_US, Fixes
from firmware.recording import run_scenario
from firmware.scenario import ScenarioError, parse
from sealing.verify import verify_store

from .conftest import make_unit

SHANGHAI = (31.2304, 121.4737)


def test_every_segment_and_still_after_the_fix_has_its_place_and_before_it_why_not(
    tmp_path: Path,
) -> None:
    unit = make_unit(tmp_path / "unit")
    run_scenario(
        unit.path,
        parse(
            {
                "seconds": 30,
                "size": "160x96",
                "clock": "synced",
                "segment_seconds": 8,
                "prerecord_seconds": 0,
                "at": [
                    {"t": 1, "press": "record"},
                    {"t": 2, "press": "photo"},
                    {"t": 12, "gps_fix": list(SHANGHAI)},
                    {"t": 14, "press": "photo"},
                    {"t": 28, "hold": "record"},
                ],
            },
            tmp_path,
        ),
        log=lambda line: None,
    )
    media = sorted(
        (r for r in verify_store(unit.path).records if r["type"] in ("segment", "still")),
        key=lambda r: r["body"]["end"]["mono_us"],
    )
    placed = [i for i, r in enumerate(media) if "lat_e7" in r["body"]["location"]]
    assert placed, media
    before, after = media[: placed[0]], media[placed[0] :]
    fix_us = after[0]["body"]["location"]["fix_mono_us"]
    for r in before:
        assert r["body"]["location"] == {"reason": "no_fix"}, r
        assert r["body"]["end"]["mono_us"] < fix_us
    for r in after:
        loc = r["body"]["location"]
        assert (loc["lat_e7"], loc["lon_e7"]) == (312304000, 1214737000), r
        assert loc["source"] == "gps" and loc["fix_mono_us"] == fix_us
        assert fix_us <= r["body"]["end"]["mono_us"] and isinstance(loc["fix_wall_us"], int)
    assert {r["type"] for r in before} == {r["type"] for r in after} == {"segment", "still"}


def test_a_unit_without_a_receiver_says_so(tmp_path: Path) -> None:
    unit = make_unit(tmp_path / "unit")
    devices = parse_devices(
        {
            "camera": {"backend": "sim", "size": "160x96"},
            "storage": {"backend": "sim"},
            "gps": {"backend": "none"},
        }
    )
    run_scenario(
        unit.path,
        parse(
            {
                "seconds": 12,
                "size": "160x96",
                "clock": "synced",
                "segment_seconds": 8,
                "prerecord_seconds": 0,
                "at": [{"t": 1, "press": "record"}, {"t": 10, "hold": "record"}],
            },
            tmp_path,
        ),
        log=lambda line: None,
        devices=devices,
    )
    segments = [r for r in verify_store(unit.path).records if r["type"] == "segment"]
    assert segments and all(r["body"]["location"] == {"reason": "no_gps"} for r in segments)


def test_the_place_is_the_last_fix_the_record_covers_and_old_fixes_are_stale() -> None:
    fixes = Fixes(fitted=True)
    here, there = {"lat_e7": 1, "lon_e7": 2}, {"lat_e7": 3, "lon_e7": 4}
    fixes.took(here, 1_000_000, None)
    fixes.took(there, 9_000_000, 42)
    # sealed a moment after it ended: a fix after its end is not its place
    assert fixes.location(0, 5_000_000)["lat_e7"] == 1
    assert fixes.location(0, 10_000_000) == {
        **there,
        "fix_mono_us": 9_000_000,
        "fix_wall_us": 42,
        "source": "gps",
    }
    late = 9_000_000 + STALE_US + 1
    assert fixes.location(late, late + 8_000_000) == {"reason": "stale", "fix_age_us": STALE_US + 1}
    assert fixes.location(0, 500_000) == {"reason": "no_fix"}
    assert fixes.location(0, 500_000, failed=True) == {"reason": "gps_fault"}
    assert Fixes(fitted=False).location(0, 1) == {"reason": "no_gps"}


@pytest.mark.parametrize(
    "value", [[91, 0], [0, 181], [31.2], "31,121", [True, 1], [float("nan"), 0]]
)
def test_a_bad_fix_in_a_scenario_is_refused_with_its_key(tmp_path: Path, value: object) -> None:
    with pytest.raises(ScenarioError, match="gps_fix"):
        parse({"seconds": 5, "at": [{"t": 1, "gps_fix": value}]}, tmp_path)
