"""The pre-use check beside the recorder (firmware/preuse.py; issue 28's
start target): `bodycam run` takes a press at once, and the check's one
`selftest` record comes when it is done, judging the devices by what they
delivered to the recorder."""

from __future__ import annotations

import threading
from pathlib import Path

from firmware.recording import run_live
from firmware.runtime import Recorder
from sealing.store import read_chain

from .conftest import make_unit
from .test_device_faults import FAULTY_TOML, _until, faulty  # noqa: F401 (a fixture)

SIM_TOML = (
    '[devices.camera]\nbackend = "sim"\nsize = "160x90"\nfps = 10\n'
    "[policy]\nsegment_s = 8.0\nprerecord_s = 0.0\n"
)


def _bodies(unit: Path) -> list[tuple[str, dict]]:
    return [
        (ln.record.type, ln.record.body) for ln in read_chain(unit / "store" / "chain.jsonl").lines
    ]


def _run_until_checked(unit: Path, press: bool) -> Recorder:
    def on_ready(rec: Recorder) -> None:
        if press:  # the first press, at once: before the check is done
            pin = rec.devices.pin_factory.pin(rec.devices.pins.record)
            pin.drive_low()

        def stop_when_checked() -> None:
            _until(lambda: any(t == "selftest" for t, _ in _bodies(unit)), "the selftest record")
            if press:
                pin.drive_high()
            rec.request_stop("test done")

        threading.Thread(target=stop_when_checked, daemon=True).start()

    return run_live(unit, log=lambda line: None, on_ready=on_ready)


def test_the_first_press_records_before_the_check_is_done(tmp_path: Path) -> None:
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(SIM_TOML)
    _run_until_checked(unit.path, press=True)
    types = [t for t, _ in _bodies(unit.path)]
    # the check waits 2 s for the devices to deliver: a press it held up
    # would come after its record
    assert types.index("record_start") < types.index("selftest"), types
    (body,) = [b for t, b in _bodies(unit.path) if t == "selftest"]
    assert body["beside"] == "recorder"
    checks = body["checks"]
    for name in ("keys", "store writable and fsync", "free space", "camera frames",
                 "microphone audio", "clock"):  # fmt: skip
        assert name in checks, (name, checks)
    assert checks["camera frames"] == "PASS" and checks["microphone audio"] == "PASS", checks
    assert checks["store writable and fsync"] == "PASS", checks
    assert "tls/unit.crt" in checks["keys"], checks  # a test unit has no TLS: a failure named
    assert checks["gps sentences"].startswith("N/A"), checks  # the simulated one: nothing to hear
    assert body["devices"]["camera"] == "sim"


def test_devices_that_failed_are_named_by_the_check_and_recording_goes_on(
    faulty: None,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(FAULTY_TOML)
    rec = _run_until_checked(unit.path, press=False)
    (body,) = [b for t, b in _bodies(unit.path) if t == "selftest"]
    checks = body["checks"]
    # a failure is recorded as its reason (a pass as PASS)
    assert "Invalid sample rate" in checks["microphone audio"], checks
    assert "no audio in 2 s" in checks["microphone audio"], checks
    assert checks["gpio"] not in ("PASS", "") and "no RTC" in checks["rtc"], checks
    assert checks["camera frames"] == "PASS", checks  # the rest is still judged
    assert rec.totals.segments >= 1  # record_on_power_on: it recorded all along
