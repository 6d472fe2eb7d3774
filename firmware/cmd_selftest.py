"""`bodycam selftest --unit DIR [--sim]`: the pre-use check, one line per
check, exit 1 on any FAIL; the result is a `selftest` chain record.

Opening the store runs its recovery first (torn line, partial segment), so
a unit cut off mid-recording is repaired before it is judged. The device
checks run on the devices unit.toml `[devices]` names (simulated when it
names none): the camera and microphone are started and must deliver; the
`selftest` record names the backend of every device it tested.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

from boot import layout, selftest
from hal.battery import SimBattery
from hal.gps import NmeaParser, replay
from hal.media import EncodedFrame, PcmChunk
from hal.pacing import LiveClock, ThreadPacer
from sealing.keys import KeyFileError
from sealing.store import StoreError
from sealing.unit import open_unit

from .devices import DeviceConfigError, Devices, build_devices, load_devices

HELP = "pre-use self-test of a unit (PASS/FAIL per check, recorded in the chain)"
DEFAULT_GPS_LOG = Path(__file__).resolve().parent.parent / "tests" / "data" / "gps_sample.nmea"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unit", type=Path, required=True, help="the unit directory")
    parser.add_argument(
        "--sim",
        action="store_true",
        help="accepted for compatibility: the devices are what unit.toml names",
    )


def _device_checks(devices: Devices, listen_s: float = 2.0) -> list[selftest.CheckResult]:
    """Start the configured camera and microphone and see that they deliver."""
    frames: list[EncodedFrame] = []
    chunks: list[PcmChunk] = []
    errors: list[str] = []
    if devices.camera is not None:
        devices.camera.start(frames.append, errors.append)
    if devices.microphone is not None:
        devices.microphone.start(chunks.append, lambda gap: None, errors.append)
    deadline = time.monotonic() + listen_s
    while time.monotonic() < deadline and (len(frames) < 5 or len(chunks) < 3):
        time.sleep(0.02)
    for dev in (devices.camera, devices.microphone):
        if dev is not None:
            dev.stop()

    def camera() -> str | None:
        if devices.camera is None:
            return devices.absent.get("camera", "no camera configured")
        if not any(f.keyframe for f in frames):
            return f"{len(frames)} frames and no keyframe in {listen_s} s {errors[:1]}"
        return None

    def microphone() -> str | None:
        if devices.microphone is None:
            return devices.absent.get("microphone", "no microphone configured")
        return None if chunks else f"no audio in {listen_s} s {errors[:1]}"

    return [
        selftest._check("camera frames", camera),  # noqa: SLF001 - the module's own helper
        selftest._check("microphone audio", microphone),
    ]  # noqa: SLF001


def run_checks(unit: Path) -> tuple[list[selftest.CheckResult], dict[str, str]]:
    cfg_path = unit / "unit.toml"
    cfg = tomllib.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    sim = cfg.get("sim", {})
    root = layout.root_of(unit)
    dev_cfg = load_devices(unit)
    clock = LiveClock()
    devices = build_devices(
        dev_cfg,
        clock=clock,
        pacer=ThreadPacer(clock),
        store_path=unit / "store",
        log=lambda line: None,
    )
    try:
        results = [
            selftest.check_keys(unit),
            selftest.check_store(unit),
            selftest.check_free_space(unit, devices.storage.space().free_bytes),
            selftest.check_firmware(root),
        ]
        if devices.battery is not None:
            if isinstance(devices.battery, SimBattery):
                devices.battery.set(float(sim.get("battery", 100)))
            results.append(selftest.check_battery(devices.battery.read().percent))
        results += _device_checks(devices)
        clock_state = "unverified"
        if dev_cfg.backends["gps"] == "sim":
            # simulated GPS: a recorded log stands in for the sky (docs/QA.md)
            gps_log = Path(sim.get("gps_log", DEFAULT_GPS_LOG))
            if root is not None and not gps_log.is_absolute():
                gps_log = root / gps_log
            parser = NmeaParser()
            fixes = list(replay(gps_log, parser)) if gps_log.exists() else []
            clock_state = "synced" if any(f.has_time for f in fixes) else clock_state
            results.append(selftest.check_gps(parser.good, parser.garbage + parser.bad_checksum))
        if devices.rtc is not None and devices.rtc.read_us() is not None:
            clock_state = "synced"
        results.append(selftest.check_clock(clock_state))
        return results, devices.backends()
    finally:
        devices.close()


def run(args: argparse.Namespace) -> int:
    try:
        load_devices(args.unit)
        store = open_unit(args.unit, boot_body={"cause": "selftest"})
    except (OSError, KeyFileError, StoreError, DeviceConfigError) as exc:
        print(f"FAIL store: {exc}")
        return 1
    try:
        if store.recovery.partial_files or store.recovery.torn_bytes:
            print(
                f"recovered: {len(store.recovery.partial_files)} partial segments, "
                f"{store.recovery.torn_bytes} torn bytes"
            )
        results, backends = run_checks(args.unit)
        for r in results:
            print(r.line())
        store.append(
            "selftest",
            {
                "devices": backends,
                "checks": {r.name: "PASS" if r.ok else r.reason for r in results},
            },
        )
    finally:
        store.close()
    failed = [r for r in results if not r.ok]
    print(f"selftest: {len(results) - len(failed)}/{len(results)} PASS", file=sys.stderr)
    return 1 if failed else 0
