"""`bodycam selftest --unit DIR [--sim]`: the pre-use check, one line per
check, exit 1 on any FAIL; the result is a `selftest` chain record.

Opening the store runs its recovery first (torn line, partial segment), so
a unit cut off mid-recording is repaired before it is judged. Only the
simulated devices exist in this tree (no Pi backends wired yet): without a
Pi, `--sim` is implied and said so.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from hal.battery import SimBattery
from hal.camera_sim import SimCamera
from hal.gps import NmeaParser, replay
from hal.microphone_sim import SimMicrophone, Sound
from hal.storage import space
from sealing.keys import KeyFileError
from sealing.store import StoreError
from sealing.unit import open_unit

from . import layout, selftest

HELP = "pre-use self-test of a unit (PASS/FAIL per check, recorded in the chain)"
DEFAULT_GPS_LOG = Path(__file__).resolve().parent.parent / "tests" / "data" / "gps_sample.nmea"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unit", type=Path, required=True, help="the unit directory")
    parser.add_argument("--sim", action="store_true",
                        help="simulated devices (implied: the Pi backends are not wired yet)")


def run_checks(unit: Path) -> list[selftest.CheckResult]:
    cfg_path = unit / "unit.toml"
    cfg = tomllib.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    sim = cfg.get("sim", {})
    root = layout.root_of(unit)
    gps_log = Path(sim.get("gps_log", DEFAULT_GPS_LOG))
    if root is not None and not gps_log.is_absolute():
        gps_log = root / gps_log
    parser = NmeaParser()
    fixes = list(replay(gps_log, parser)) if gps_log.exists() else []
    clock = "synced" if any(f.has_time for f in fixes) else "unverified"
    cam = SimCamera(320, 180)
    mic = SimMicrophone([Sound(0, "noise:-40", 1)])
    return [
        selftest.check_keys(unit),
        selftest.check_store(unit),
        selftest.check_free_space(unit, space(unit).free_bytes),
        selftest.check_firmware(root),
        selftest.check_battery(SimBattery(percent=float(sim.get("battery", 100))).read().percent),
        selftest.check_camera(cam.next_frame),
        selftest.check_microphone(mic.read),
        selftest.check_gps(parser.good, parser.garbage + parser.bad_checksum),
        selftest.check_clock(clock),
    ]


def run(args: argparse.Namespace) -> int:
    try:
        store = open_unit(args.unit, boot_body={"cause": "selftest"})
    except (OSError, KeyFileError, StoreError) as exc:
        print(f"FAIL store: {exc}")
        return 1
    try:
        if store.recovery.partial_files or store.recovery.torn_bytes:
            print(f"recovered: {len(store.recovery.partial_files)} partial segments, "
                  f"{store.recovery.torn_bytes} torn bytes")
        results = run_checks(args.unit)
        for r in results:
            print(r.line())
        store.append("selftest", {"mode": "simulation",
                                  "checks": {r.name: "PASS" if r.ok else r.reason
                                             for r in results}})
    finally:
        store.close()
    failed = [r for r in results if not r.ok]
    print(f"selftest: {len(results) - len(failed)}/{len(results)} PASS", file=sys.stderr)
    return 1 if failed else 0
