"""The card as it ships, booted under QEMU (tests/emulate): each test flashes a
new unit from the cached stock card and boots it. Marked `emulated`: root,
QEMU and tens of minutes under TCG; `scripts/test -m emulated` (the soak
ones: `-m "soak and emulated"`). Every wait is a condition with a ceiling.

The camera is the replay backend here: picamera2 cannot run off a Pi."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulate.qemu import BootOptions
from tests.emulate.run import be_nice, wait_for
from tests.emulate.smoke import LEDS, PROMPTS, smoke
from tests.emulate.unit import EmulatedUnit

pytestmark = [
    pytest.mark.emulated,
    pytest.mark.timeout(7200),
    pytest.mark.skipif(os.geteuid() != 0, reason="the emulated unit's card is built as root"),
]
VENV = "/opt/bodycam/venv/bin/bodycam"


def _log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


@pytest.fixture
def unit(tmp_path: Path) -> Iterator[EmulatedUnit]:
    be_nice()  # a shared 2-core machine: the card's build and QEMU give way
    u = EmulatedUnit(tmp_path / "run", _log)
    (tmp_path / "run").mkdir()
    try:
        yield u
    finally:
        u.shutdown()


def _faults(u: EmulatedUnit) -> dict[str, str]:
    return {r["body"]["what"]: r["body"]["reason"] for r in u.records() if r["type"] == "fault"}


PARTIAL_BYTES = 256 * 1024  # a few seconds of the replay clip and its sound


def _partial_bytes(u: EmulatedUnit) -> int:
    """The size of the segment being written (0 if none yet)."""
    assert u.agent is not None
    out = u.agent.check("stat -c %s /var/lib/bodycam/store/segments/*.partial 2>/dev/null || true")
    return max((int(x) for x in out.split() if x.isdigit()), default=0)


def _guest_verify(u: EmulatedUnit) -> dict[str, Any]:
    """`bodycam verify` of the unit's own store, in the guest, with the
    recorder stopped (the store has one writer)."""
    assert u.agent is not None
    u.agent.check("systemctl stop bodycam-recorder", timeout=300)
    out = u.agent.sh(f"{VENV} verify /var/lib/bodycam --json", timeout=900)
    report: dict[str, Any] = json.loads(out.out)
    return report


def test_smoke_leds_and_prompts(unit: EmulatedUnit) -> None:
    result = smoke(unit, _log)
    _log(result.line())
    assert result.ok, result.failed
    assert set(result.leds) == {"idle", "recording", "paused", "recording after resume", "stopped"}
    for state, readings in result.leds.items():
        expected = LEDS["idle" if state == "stopped" else state.split(" after")[0]]
        assert readings and all(r == expected for r in readings), (state, readings)
    assert result.prompts_found == PROMPTS
    assert result.segments >= 2


def test_power_cut_mid_recording_recovers(unit: EmulatedUnit) -> None:
    unit.prepare()
    unit.boot()
    unit.wait_recorder()
    hw = unit.hw()
    unit.wait_record("clock", where=lambda b: b.get("state") == "synced")
    seq = unit.last_seq()
    hw.press("record")
    unit.wait_record("record_start", after=seq)
    assert unit.agent is not None
    # a segment file under way, with some seconds in it, then the battery out
    # (the partial file appears at the press, before anything is in it: a cut
    # then leaves no segment to judge)
    wait_for(lambda: unit.agent is not None and _partial_bytes(unit) >= PARTIAL_BYTES,
             what=f"a segment being written, {PARTIAL_BYTES} bytes in it", timeout=300)  # fmt: skip
    cut_wall_us = time.time_ns() // 1000
    unit.power_cut()
    unit.boot()
    unit.wait_recorder()
    records = unit.records()
    boots = [r for r in records if r["type"] == "boot"]
    cut = [r for r in records if r["type"] == "power_loss"]
    assert cut, [r["type"] for r in records]
    # the partial segment sealed as it lay: what it holds ends at most the
    # store's sync interval (1 s) and the journal's commit (1 s) before the cut
    sealed = [r for r in records if r["type"] == "segment" and r["seq"] > cut[0]["seq"] - 3]
    # the last media kept: a sealed segment's end, or the partial file's last
    # write (the recovery seals it in its power_loss record)
    ends = [r["body"]["end"]["wall_us"] for r in records if r["type"] == "segment"]
    ends += [r["body"]["last_write_wall_us"] for r in cut if "last_write_wall_us" in r["body"]]
    assert ends, [r["type"] for r in records]
    last_end = max(ends)
    loss_s = (cut_wall_us - last_end) / 1e6
    _log(f"power cut: {len(cut)} power_loss record(s), loss {loss_s:.1f} s, sealed {sealed}")
    assert loss_s < 5.0, f"{loss_s:.1f} s of recording lost at the cut"
    # the first start's and the start after the cut (with the self-test as
    # ExecStartPre, each start opened the store twice: a boot record each)
    assert len(boots) >= 2, boots
    report = _guest_verify(unit)
    assert report["ok"], report["problems"]


def test_mic_failing_at_start_and_no_rtc_record_with_faults(unit: EmulatedUnit) -> None:
    # the microphone card's other half held at 48 kHz: the recorder's 16 kHz
    # stream fails as it starts ([Errno -9997]); rtc_cmos never initialised
    unit.prepare()
    unit.boot(BootOptions(extra_cmdline=("emu.micbusy=1", "initcall_blacklist=cmos_init")))
    started = unit.wait_recorder()
    assert unit.agent is not None
    assert unit.agent.sh("test -e /dev/rtc0").rc != 0  # really no RTC
    seq = unit.last_seq()
    unit.hw().press("record")
    unit.wait_record("record_start", after=seq)
    unit.wait_record("segment", after=seq, timeout=600)  # video only, sealed
    faults = _faults(unit)
    assert "microphone" in faults and "Invalid sample rate" in faults["microphone"], faults
    assert "rtc" in faults and "no RTC" in faults["rtc"], faults
    after = unit.service("NRestarts", "MainPID")
    assert after["NRestarts"] == "0" and after["MainPID"] == started["MainPID"], after


def test_no_gpio_chip_is_a_fault_not_a_restart_loop(unit: EmulatedUnit) -> None:
    unit.prepare()
    unit.boot(BootOptions(extra_cmdline=("emu.nogpio=1",)))
    started = unit.wait_recorder()
    unit.wait_record("fault", where=lambda b: b.get("what") == "gpio")
    # a minute on, still the same process: no exit, no restart
    first = time.monotonic()
    wait_for(lambda: time.monotonic() - first > 60 and unit.service("NRestarts")["NRestarts"]
             == "0", what="a minute of the recorder up without its GPIO", timeout=600,
             every=10)  # fmt: skip
    assert unit.service("MainPID")["MainPID"] == started["MainPID"]


def test_a_stopped_recorder_is_restarted_by_the_watchdog(unit: EmulatedUnit) -> None:
    unit.prepare()
    unit.boot()
    started = unit.wait_recorder()
    seq = unit.last_seq()
    unit.hw().press("record")
    unit.wait_record("record_start", after=seq)
    assert unit.agent is not None
    unit.agent.check(f"kill -STOP {started['MainPID']}")
    wait_for(lambda: unit.service("NRestarts")["NRestarts"] != "0",
             what="systemd's watchdog restarting the stopped recorder", timeout=600,
             every=5)  # fmt: skip
    restarted = unit.wait_recorder()
    assert restarted["MainPID"] != started["MainPID"]
    journal = unit.journal()
    assert "Watchdog timeout" in journal, journal[-2000:]
    records = unit.records()
    assert [r for r in records if r["type"] == "power_loss" and r["seq"] > seq], "no recovery"
    report = _guest_verify(unit)
    assert report["ok"], report["problems"]


@pytest.mark.soak
def test_first_boot_makes_the_venv_offline_from_the_cards_wheelhouse(
    unit: EmulatedUnit,
) -> None:
    unit.prebake = False  # the stock card without a venv: the unit makes its own
    unit.prepare()
    agent = unit.boot()
    unit.wait_recorder(timeout=5400)
    shown = agent.check("systemctl show bodycam-venv -p Result,ExecMainStartTimestampMonotonic")
    assert "Result=success" in shown and "Monotonic=0" not in shown, shown  # it ran, this boot
    journal = unit.journal("bodycam-venv.service")
    assert "Successfully installed" in journal and "bodycam-0.1.0" in journal, journal[-2000:]


@pytest.mark.soak
def test_the_aarch64_card_boots_to_a_started_recorder(unit: EmulatedUnit) -> None:
    """The card for the Pi's CPU: Debian 12 arm64 with the aarch64 wheelhouse
    (the one QA flashes), flashed by flash.py, booted under
    qemu-system-aarch64 -M virt (TCG, many times slower than a Pi). No GPIO
    chip (no gpio-sim or lgpio built for arm64 here) and no GPS port (virt has
    one UART, the console): the recorder starts with those as faults, and its
    pre-use check passes the venv the card's aarch64 wheels made."""
    unit.arch = "arm64"
    unit.prepare()
    agent = unit.boot(BootOptions(extra_cmdline=("emu.nogpio=1",)), gps=False)
    assert agent.check("uname -m").strip() == "aarch64"
    started = unit.wait_recorder(timeout=5400)
    _log(f"aarch64 recorder active: {started}; {unit.timings}")
    machine = agent.check(f"{VENV.removesuffix('bodycam')}python -c "
                          "'import platform, av, numpy, cryptography; print(platform.machine())'",
                          timeout=900)  # fmt: skip
    assert machine.strip() == "aarch64", machine
    unit.wait_record("fault", where=lambda b: b.get("what") == "gpio", timeout=1800)
    unit.wait_record("selftest", timeout=5400)
    checked = [r["body"] for r in unit.records() if r["type"] == "selftest"][-1]
    _log(f"aarch64 pre-use check: {checked['checks']}")
    assert checked["beside"] == "recorder"
    assert checked["checks"]["venv integrity"] == "PASS", checked
    assert unit.service("NRestarts")["NRestarts"] == "0"
