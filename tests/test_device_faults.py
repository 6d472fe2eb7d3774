"""A device that cannot be opened, or opens and then fails as its stream
starts, is a `fault` record and the unit records without it; never an exit
(under systemd an exit is a restart loop, then a reboot loop). Issue 21:
gpiozero's BadPinFactory off a Pi and PyAudio's `[Errno -9997] Invalid
sample rate` at stream start both ended `selftest` and `run` with exit 2."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from gpiozero import Device

from firmware import cmd_selftest
from firmware.recording import run_live
from firmware.runtime import Recorder
from sealing.verify import verify_store

from .conftest import make_unit
from .doubles import pyaudio_double
from .media_check import continuous_runs, decode

# A Pi's device table on a machine that has none of it, but a simulated camera
FAULTY_TOML = (
    '[devices.camera]\nbackend = "sim"\nsize = "160x90"\nfps = 10\n'
    '[devices.microphone]\nbackend = "pyaudio"\ndevice = "USB Audio"\n'
    '[devices.gpio]\nbackend = "pi"\n'
    '[devices.rtc]\nbackend = "linux"\ndevice = "/dev/rtc-none"\n'
    "[policy]\nrecord_on_power_on = true\nsegment_s = 8.0\nprerecord_s = 0.0\n"
)


@pytest.fixture
def faulty(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyAudio (the double) opens, but its input stream will not start, as
    PortAudio answers a rate the card cannot take; gpiozero finds no Pi."""
    monkeypatch.setitem(sys.modules, "pyaudio", pyaudio_double)
    real_open = pyaudio_double.PyAudio.open

    def open_(self: pyaudio_double.PyAudio, *a: Any, **kw: Any) -> Any:
        if kw.get("input"):
            raise OSError(-9997, "Invalid sample rate")
        return real_open(self, *a, **kw)

    monkeypatch.setattr(pyaudio_double.PyAudio, "open", open_)
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(Device, "pin_factory", None)  # gpiozero's own global: left unset


def _until(condition: Any, what: str, ceiling_s: float = 120.0) -> None:
    deadline = time.monotonic() + ceiling_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {ceiling_s} s"
        time.sleep(0.05)


def test_run_records_without_the_devices_that_failed(faulty: None, tmp_path: Path) -> None:
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(FAULTY_TOML)

    def on_ready(rec: Recorder) -> None:
        def stop_after_a_segment() -> None:
            _until(lambda: rec.totals.segments >= 2, "two sealed segments")
            rec.request_stop("test done")

        threading.Thread(target=stop_after_a_segment, daemon=True).start()

    rec = run_live(unit.path, log=lambda line: None, on_ready=on_ready)
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    faults = {
        r["body"]["what"]: r["body"]["reason"] for r in report.records if r["type"] == "fault"
    }
    assert "Invalid sample rate" in faults["microphone"], faults
    assert "did not start" in faults["microphone"]
    assert faults["gpio"], faults  # gpiozero found no pin factory here (no Pi)
    assert "no RTC" in faults["rtc"], faults
    assert rec.devices.backends()["gpio"] == "absent"
    files = [f for r in continuous_runs(unit.path, unit.agency.identity) for f in r]
    assert files and all(decode(data).frames for _, data in files)  # picture, no sound


def test_selftest_reports_the_failures_instead_of_crashing(faulty: None, tmp_path: Path) -> None:
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(FAULTY_TOML)
    results, backends = cmd_selftest.run_checks(unit.path)
    by_name = {r.name: r for r in results}
    assert by_name["microphone audio"].failed
    assert "did not start" in by_name["microphone audio"].reason
    assert "Invalid sample rate" in by_name["microphone audio"].reason
    assert by_name["gpio"].failed and by_name["rtc"].failed
    assert not by_name["camera frames"].failed  # the rest is still checked
    assert backends["gpio"] == "absent" and backends["rtc"] == "absent"


def test_a_gps_fix_that_waited_is_taken_at_its_own_time(tmp_path: Path) -> None:
    # Issue 21's emulated unit: with the loop busy for a minute, fixes queued
    # up and the oldest set the clock 64 s back. A fix is read at a monotonic
    # instant; its UTC is that instant's, however late the loop takes it.
    from datetime import UTC, datetime

    from hal.gps import Fix

    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text('[devices.camera]\nsize = "160x90"\n')
    waited_s = 5.0

    def on_ready(rec: Recorder) -> None:
        def late_fix() -> None:
            read_us = time.monotonic_ns() // 1000 - int(waited_s * 1e6)
            utc = datetime.fromtimestamp(time.time() - waited_s, UTC)
            rec.devices.gps.emit(Fix(utc, None, None, 1, 8, read_mono_us=read_us))  # type: ignore[union-attr]
            _until(lambda: any(r.type == "clock" for r in rec.store.records()), "a clock record")
            rec.request_stop("test done")

        threading.Thread(target=late_fix, daemon=True).start()

    run_live(unit.path, log=lambda line: None, on_ready=on_ready)
    report = verify_store(unit.path, identity=unit.agency.identity)
    gps = [r["body"] for r in report.records if r["type"] == "clock"]
    assert gps and gps[-1]["source"] == "gps", gps
    # the clock (the system's, close to true) set to the true time now: no
    # step back by the 5 s the fix waited
    assert abs(gps[-1]["step_us"]) < 1_000_000, gps[-1]
