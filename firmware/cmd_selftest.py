"""`bodycam selftest --unit DIR [--sim]`: the pre-use check, one line per
check (PASS, FAIL, or N/A where there is nothing of the kind to check), exit
1 on any FAIL; the result is a `selftest` chain record.

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
from collections.abc import Callable
from pathlib import Path

from boot import layout, selftest
from hal.battery import SimBattery
from hal.gps import SAMPLE_LOG, Fix, NmeaParser, SerialGps, replay
from hal.media import EncodedFrame, PcmChunk
from hal.pacing import LiveClock, ThreadPacer
from hal.ports import Rtc
from hal.rtc import RtcInvalid
from sealing.keys import KeyFileError
from sealing.store import Store, StoreError
from sealing.unit import open_unit

from . import unitconfig
from .devices import Devices, build_devices
from .runtime import chain_clock_facts
from .unitclock import BUILD_UTC_US, UnitClock
from .unitconfig import ConfigError, UnitConfig

DEFAULT_GPS_LOG = SAMPLE_LOG


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unit", type=Path, required=True, help="the unit directory")
    parser.add_argument(
        "--sim",
        action="store_true",
        help="accepted for compatibility: the devices are what unit.toml names",
    )
    parser.add_argument(
        "--listen-s",
        type=float,
        default=LISTEN_S,
        help=f"longest wait for the camera, microphone and a serial GPS to deliver "
        f"(default {LISTEN_S:g}; the check ends as soon as all have)",
    )


LISTEN_S = 2.0  # a GPS receiver sends every second; a camera and a microphone at once


def _device_checks(
    devices: Devices, fixes: list[Fix], listen_s: float = LISTEN_S
) -> list[selftest.CheckResult]:
    """Start the configured camera, microphone and a serial GPS and see that
    they deliver (a device not started is never passed)."""
    frames: list[EncodedFrame] = []
    chunks: list[PcmChunk] = []
    errors: list[str] = []
    not_started: dict[str, str] = {}  # a device that opened but would not start: its FAIL
    serial_gps = devices.gps if isinstance(devices.gps, SerialGps) else None

    def start(name: str, begin: Callable[[], None]) -> None:
        try:
            begin()
        except Exception as exc:
            not_started[name] = f"did not start: {type(exc).__name__}: {exc}"

    if devices.camera is not None:
        camera_dev = devices.camera
        start("camera", lambda: camera_dev.start(frames.append, errors.append))
    if devices.microphone is not None:
        mic = devices.microphone
        start("microphone", lambda: mic.start(chunks.append, lambda gap: None, errors.append))
    if serial_gps is not None:
        gps = serial_gps
        start("gps", lambda: gps.start(fixes.append, errors.append))
    deadline = time.monotonic() + listen_s
    while time.monotonic() < deadline and (
        len(frames) < 5 or len(chunks) < 3 or (serial_gps and not serial_gps.parser.good)
    ):
        time.sleep(0.02)
    for dev in (devices.camera, devices.microphone, serial_gps):
        if dev is not None:
            dev.stop()

    def camera() -> str | None:
        if devices.camera is None:
            return devices.absent.get("camera", "no camera configured")
        if "camera" in not_started:
            return not_started["camera"]
        if not any(f.keyframe for f in frames):
            return f"{len(frames)} frames and no keyframe in {listen_s} s {errors[:1]}"
        return None

    def microphone() -> str | None:
        if devices.microphone is None:
            return devices.absent.get("microphone", "no microphone configured")
        if "microphone" in not_started:
            return not_started["microphone"]
        return None if chunks else f"no audio in {listen_s} s {errors[:1]}"

    checks = [
        selftest._check("camera frames", camera),
        selftest._check("microphone audio", microphone),
    ]
    if serial_gps is not None:
        p = serial_gps.parser
        if "gps" in not_started:
            checks.append(selftest.CheckResult("gps sentences", False, not_started["gps"]))
        else:
            checks.append(selftest.check_gps(p.good, p.garbage + p.bad_checksum))
    return checks


def _clock_state(rtc: Rtc | None, fixes: list[Fix], store: Store | None) -> str:
    """The state the recorder would start in: a GPS fix with time is synced;
    else the RTC judged against the chain as at power-on (docs/STATES.md)."""
    if any(f.has_time for f in fixes):
        return "synced"
    if rtc is None:
        return "unverified"
    try:
        rtc_us = rtc.read_us()
    except (RtcInvalid, OSError):
        return "unverified"
    if rtc_us is None or store is None:
        return "unverified"
    last_sync, floor = chain_clock_facts(store)
    return UnitClock().adopt_rtc(rtc_us, last_sync, max(floor, BUILD_UTC_US))["state"]


def run_checks(
    unit: Path,
    store: Store | None = None,
    config: UnitConfig | None = None,
    listen_s: float = LISTEN_S,
) -> tuple[list[selftest.CheckResult], dict[str, str]]:
    """`config`: the unit's checked unit.toml (read here when not given)."""
    config = config or unitconfig.load(unit)
    sim = config.sim
    root = layout.root_of(unit)
    dev_cfg = config.devices
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
            selftest.check_venv(root),
        ]
        if devices.battery is not None:
            if isinstance(devices.battery, SimBattery):
                devices.battery.set(sim.battery)
            try:
                percent = devices.battery.read().percent
            except Exception as exc:
                results.append(selftest.CheckResult("battery", False, f"unreadable: {exc}"))
            else:
                results.append(selftest.check_battery(percent))
        elif "battery" in devices.absent:
            results.append(selftest.CheckResult("battery", False, devices.absent["battery"]))
        fixes: list[Fix] = []
        results += _device_checks(devices, fixes, listen_s)
        if dev_cfg.backends["gps"] == "sim":
            # simulated GPS: a recorded log stands in for the sky (docs/QA.md)
            gps_log = Path(sim.gps_log) if sim.gps_log is not None else DEFAULT_GPS_LOG
            if root is not None and not gps_log.is_absolute():
                gps_log = root / gps_log
            parser = NmeaParser()
            fixes += list(replay(gps_log, parser)) if gps_log.exists() else []
            results.append(selftest.check_gps(parser.good, parser.garbage + parser.bad_checksum))
        elif devices.gps is None:
            results.append(selftest.check_gps(0, 0))  # none configured, or it failed to open
        for name in ("gpio", "speaker", "rtc"):  # opened at start, or a FAIL naming why not
            if name in devices.absent:
                results.append(selftest.CheckResult(name, False, devices.absent[name]))
        results.append(selftest.check_clock(_clock_state(devices.rtc, fixes, store)))
        return results, devices.backends()
    finally:
        devices.close()


def run(args: argparse.Namespace) -> int:
    if not 0 < args.listen_s <= 600:
        print("bodycam selftest: --listen-s must be above 0, at most 600", file=sys.stderr)
        return 2
    try:  # a bad unit.toml is refused before the store is opened (no boot record)
        config = unitconfig.load(args.unit)
    except ConfigError as exc:
        print(f"bodycam selftest: {exc}", file=sys.stderr)
        return 2
    try:
        store = open_unit(args.unit, boot_body={"cause": "selftest"})
    except (OSError, KeyFileError, StoreError) as exc:
        print(f"FAIL store: {exc}")
        return 1
    try:
        if store.recovery.partial_files or store.recovery.torn_bytes:
            print(
                f"recovered: {len(store.recovery.partial_files)} partial segments, "
                f"{store.recovery.torn_bytes} torn bytes"
            )
        results, backends = run_checks(args.unit, store, config, args.listen_s)
        # who holds the unit: the officer flashed, or the last check-out at a dock
        print(f"holder   {store.officer}")
        for r in results:
            print(r.line())
        store.append(
            "selftest",
            {
                "devices": backends,
                "checks": {r.name: r.recorded() for r in results},
            },
        )
    finally:
        store.close()
    failed = [r for r in results if r.failed]
    judged = [r for r in results if r.applicable]
    na = len(results) - len(judged)
    print(
        f"selftest: {len(judged) - len(failed)}/{len(judged)} PASS"
        + (f", {na} not applicable" if na else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0
