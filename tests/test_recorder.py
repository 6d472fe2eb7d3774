"""The recorder end to end on a simulated unit: scenario in, sealed store out,
checked with the verifier (decrypting), PyAV and the chain's records."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import pytest

from firmware.recording import run_scenario
from firmware.scenario import ScenarioError, parse
from hal.camera_sim import read_number
from hal.microphone_sim import CHUNK
from sealing.age import decrypt
from sealing.verify import verify_store

from .conftest import Unit
from .media_check import decode, decrypted_segments, ffmpeg_warnings

ROOT = Path(__file__).resolve().parent.parent
SPEECH = "I am resuming because the driver came back to the car and is talking to me again."


def _run(unit: Unit, tmp: Path, data: dict, **kw: object) -> tuple[object, list[str], list]:
    log: list[str] = []
    rec = run_scenario(unit.path, parse(data, tmp), log=log.append, **kw)  # type: ignore[arg-type]
    records = verify_store(unit.path).records
    return rec, log, records


def _frames(unit: Unit, files: list[str]) -> list[int]:
    nums = []
    for name in files:
        plain = io.BytesIO()
        with (unit.path / "store" / "segments" / name).open("rb") as f:
            assert decrypt(f, unit.agency.identity, plain).complete
        plain.seek(0)
        with av.open(plain, format="mpegts") as c:
            for frame in c.decode(video=0):
                nums.append(read_number(frame.to_ndarray(format="rgb24")))
    return nums


BASE = {
    "seconds": 16,
    "size": "320x180",
    "clock": "synced",
    "segment_seconds": 8,
    "prerecord_seconds": 2,
}


def test_record_pause_resume_with_spoken_note(unit: Unit, tmp_path: Path) -> None:
    rec, log, records = _run(
        unit,
        tmp_path,
        {
            **BASE,
            "at": [
                {"t": 3, "press": "record"},
                {"t": 7, "press": "function"},
                {"t": 8, "press": "record"},
                {"t": 15, "hold": "record"},
            ],
            "sound": [{"t": 8.5, "speech": SPEECH, "seconds": 6}],
        },
    )
    types = [r["type"] for r in records]
    for t in ("record_start", "pause", "resume", "resume_note", "record_stop"):
        assert t in types
    note = next(r for r in records if r["type"] == "resume_note")["body"]
    assert note["given"] is True and note["speech_ms"] >= 3000 and note["file"]
    # linked to its resume by the chain's sequence, not by a time
    assert records[note["resume"]]["type"] == "resume"
    assert note["resume"] == max(r["seq"] for r in records if r["type"] == "resume")
    assert "state_reason" in [p for _, p in rec.devices.speaker.played]
    report = verify_store(unit.path, identity=unit.agency.identity, escrow_key=unit.agency.escrow)
    assert report.ok, report.problems
    # the first recording: pre-record from t=1 s, no frame lost or doubled across rollovers
    pause = next(r["seq"] for r in records if r["type"] == "pause")
    first = [r["body"]["file"] for r in records if r["type"] == "segment" and r["seq"] < pause]
    nums = _frames(unit, first)
    assert nums == list(range(nums[0], nums[0] + len(nums)))
    # 1 s .. the pause: a function press counts once its double-press window (0.4 s) is over
    assert nums[0] == 30 and 6.5 * 30 <= len(nums) <= 6.7 * 30


def test_no_note_reprompts_then_records_missing(unit: Unit, tmp_path: Path) -> None:
    rec, log, records = _run(
        unit,
        tmp_path,
        {
            **BASE,
            "seconds": 52,
            "size": "160x90",
            "at": [
                {"t": 1, "press": "record"},
                {"t": 2, "press": "function"},
                {"t": 3, "press": "record"},
            ],
            "sound": [{"t": 3, "source": "noise:-25", "seconds": 40}],
        },
    )
    note = next(r for r in records if r["type"] == "resume_note")["body"]
    assert note["given"] is False and note["speech_ms"] < 1000
    played = [p for _, p in rec.devices.speaker.played]
    assert played.count("state_reason") == 2 and "note_missing" in played
    assert rec.indicators is not None and rec.indicators.warning == "note_missing"


def test_a_foreign_step_of_the_system_clock_is_undone_and_recorded(
    unit: Unit, tmp_path: Path
) -> None:
    rec, log, records = _run(
        unit,
        tmp_path,
        {**BASE, "seconds": 5, "at": [{"t": 1, "clock_jump_s": -30}, {"t": 2, "gps_time": True}]},
    )
    clocks = [r for r in records if r["type"] == "clock"]
    dock, foreign = (r["body"] for r in clocks)
    assert dock["source"] == "dock"  # "clock = synced": the dock set it before the run
    assert foreign["event"] == "foreign_step"
    assert -30_500_000 <= foreign["system_step_us"] <= -29_500_000
    # the unit's time ran on through the step: stamps stay on true time, and the
    # GPS fix a second later finds nothing to correct
    assert foreign["state"] == "synced"
    walls = [r["wall_us"] - r["mono_us"] for r in records if r["seq"] >= clocks[0]["seq"]]
    assert max(walls) - min(walls) < 300_000


def test_camera_fault_is_recorded_and_recording_goes_on(unit: Unit, tmp_path: Path) -> None:
    rec, log, records = _run(
        unit,
        tmp_path,
        {
            **BASE,
            "seconds": 10,
            "at": [
                {"t": 1, "press": "record"},
                {"t": 3, "fault": "camera", "reason": "ribbon"},
                {"t": 7, "hold": "record"},
            ],
        },
    )
    fault = next(r for r in records if r["type"] == "fault")["body"]
    # a loose ribbon stops the frames silently: the frame watchdog notices
    assert fault["what"] == "camera" and "no frame for" in fault["reason"]
    stops = [r for r in records if r["type"] == "record_stop"]
    assert stops[0]["body"]["cause"] == "button"  # the officer stopped it, not the fault
    assert verify_store(unit.path, identity=unit.agency.identity).ok


def test_storage_floor_stops_and_seals(unit: Unit, tmp_path: Path) -> None:
    rec, log, records = _run(
        unit,
        tmp_path,
        {
            **BASE,
            "seconds": 6,
            "at": [{"t": 1, "press": "record"}, {"t": 3, "storage_free_mib": 10}],
        },
    )
    stop = next(r for r in records if r["type"] == "record_stop")["body"]
    assert stop["cause"] == "storage" and "storage_low" in [r["type"] for r in records]
    assert verify_store(unit.path, identity=unit.agency.identity).ok


def test_bad_scenarios_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="seconds"):
        parse({"seconds": -1}, tmp_path)
    with pytest.raises(ScenarioError, match="unknown button"):
        parse({"seconds": 1, "at": [{"t": 0, "press": "volume"}]}, tmp_path)
    with pytest.raises(ScenarioError, match="colour = 'red': unknown scenario key"):
        parse({"seconds": 1, "colour": "red"}, tmp_path)


def _long_run(unit: Unit, tmp_path: Path) -> subprocess.Popen:
    """`bodycam run` recording a long scenario in a child process."""
    scen = tmp_path / "long.toml"
    scen.write_text(
        'seconds = 600\nsize = "320x180"\nclock = "synced"\nsegment_seconds = 8\n'
        '[[at]]\nt = 0.5\npress = "record"\n'
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firmware.cli",
            "run",
            "--unit",
            str(unit.path),
            "--sim",
            "--scenario",
            str(scen),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_killed_mid_recording_recovers_first_and_verifies(unit: Unit, tmp_path: Path) -> None:
    child = _long_run(unit, tmp_path)
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("sealed ") and "000003" in line:
            break
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.wait()
    log: list[str] = []
    run_scenario(unit.path, parse({"seconds": 1, "clock": "synced"}, tmp_path), log=log.append)
    assert log[0].startswith("recovery:") and "partial_files=['" in log[0]
    report = verify_store(unit.path, identity=unit.agency.identity, escrow_key=unit.agency.escrow)
    assert report.ok, report.problems
    cut = [r for r in report.records if r["type"] == "power_loss"]
    assert cut and cut[0]["body"]["cause"] == "partial_segment"
    # recovery came before anything new: the power_loss follows the next boot directly
    boots = [i for i, r in enumerate(report.records) if r["type"] == "boot"]
    assert report.records[boots[-1] + 1]["type"] == "power_loss"
    assert os.listdir(unit.path / "store" / "segments")


def test_sigterm_seals_the_segment_and_exits_cleanly(unit: Unit, tmp_path: Path) -> None:
    child = _long_run(unit, tmp_path)
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("sealed "):
            break
    child.send_signal(signal.SIGTERM)
    rest = child.stdout.read()
    assert child.wait(timeout=60) == 0, rest
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    stop = [r for r in report.records if r["type"] == "record_stop"][-1]
    assert stop["body"]["cause"] == "shutdown:SIGTERM"
    assert not [r for r in report.records if r["type"] == "power_loss"]
    assert not [p for p in os.listdir(unit.path / "store" / "segments") if "partial" in p]
    st = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "status", "--unit", str(unit.path), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    import json

    data = json.loads(st.stdout)
    assert data["state"] == "idle" and data["unexported"]["count"] >= 2
    assert data["clock"]["state"] == "synced"


def test_policy_from_unit_toml_refuse_and_unexported_warning(unit: Unit, tmp_path: Path) -> None:
    (unit.path / "unit.toml").write_text(
        '[policy]\nclock_policy = "refuse"\nunexported_warn_s = 0\n'
    )
    rec, log, records = _run(
        unit, tmp_path, {"seconds": 3, "size": "160x90", "at": [{"t": 1, "press": "record"}]}
    )
    assert "record_start" not in [r["type"] for r in records]
    refused = next(r for r in records if r["type"] == "fault")["body"]
    assert refused["what"] == "record_refused"
    # a unit holding media not exported for more than 24 h warns at power-on (R15)
    (unit.path / "unit.toml").write_text("")
    _run(unit, tmp_path, {**BASE, "seconds": 3, "at": [{"t": 1, "press": "record"}]})
    rec, log, records = _run(unit, tmp_path, {**BASE, "seconds": 1})
    assert "export_overdue" not in [p for _, p in rec.devices.speaker.played]
    rec, log, records = _run(
        unit, tmp_path, {**BASE, "seconds": 1}, wall_start_ns=time.time_ns() + 25 * 3600 * 10**9
    )
    assert "export_overdue" in [p for _, p in rec.devices.speaker.played]
    (unit.path / "unit.toml").write_text('[policy]\nclock_polcy = "refuse"\n')
    with pytest.raises(ValueError, match=r"\[policy\] clock_polcy = 'refuse': unknown key"):
        _run(unit, tmp_path, {**BASE, "seconds": 1})


def test_systemd_notify_ready_and_watchdog(unit: Unit, tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(30)
    scen = tmp_path / "s.toml"
    scen.write_text('seconds = 3\nsize = "160x90"\nclock = "synced"\n')
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "firmware.cli",
            "run",
            "--unit",
            str(unit.path),
            "--sim",
            "--scenario",
            str(scen),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    got = []
    server.settimeout(0.5)
    try:
        while True:
            got.append(server.recv(100).decode())
    except TimeoutError:
        pass
    server.close()
    assert got[0] == "READY=1" and got.count("WATCHDOG=1") >= 2


@pytest.mark.parametrize("device", ["microphone", "camera"])
def test_a_device_silent_for_a_while_is_taken_back_when_it_delivers_again(
    unit: Unit, tmp_path: Path, device: str
) -> None:
    """A device that goes quiet without an error (a slow start under load,
    a driver that stalls and wakes) is faulted after a second of silence,
    and taken back when it delivers again by itself: a `recovered` record,
    its media in the files after it, and the watchdog fed again; before,
    it stayed faulted until systemd's watchdog restarted the recorder."""
    pats: list[int] = []

    def ready(rec: Any) -> None:
        rec.notify = lambda message: pats.append(rec.now_us()) or True

    rec, log, records = _run(
        unit,
        tmp_path,
        {
            **BASE,
            "seconds": 14,
            "segment_seconds": 8,
            "at": [
                {"t": 1, "press": "record"},
                {"t": 3, "quiet": device, "seconds": 2.5},
                {"t": 12, "hold": "record"},
            ],
        },  # fmt: skip
        on_ready=ready,
    )
    kinds = [(r["type"], r["body"].get("what")) for r in records]
    assert ("fault", device) in kinds and ("recovered", device) in kinds, kinds
    fault = next(r for r in records if r["type"] == "fault" and r["body"].get("what") == device)
    back = next(r for r in records if r["type"] == "recovered")
    assert "by itself" in back["body"]["reason"]
    assert any(r["type"] == "stall" for r in records)
    assert fault["seq"] < back["seq"]
    # the watchdog: not fed while the device was silent, fed again after it came back
    silent = [p for p in pats if fault["mono_us"] < p < back["mono_us"]]
    after = [p for p in pats if p > back["mono_us"]]
    assert not silent and len(after) >= 3, (silent, after)
    # the device's media is in the files after it came back: judged by decoding them
    want = "aac" if device == "microphone" else "h264"
    files = [r for r in records if r["type"] == "segment" and r["seq"] > back["seq"]]
    assert files and all(want in r["body"].get("codecs", [want]) for r in files), files
    after = [(r, data) for r, data in decrypted_segments(unit.path, unit.agency.identity)
             if r["seq"] > back["seq"]]  # fmt: skip
    assert after
    for r, data in after:
        assert ffmpeg_warnings(["-f", "mpegts", "-i", "-"], data) == "", r["body"]["file"]
        d = decode(data)
        span_s = (d.frames[-1][0] - d.frames[0][0]) / 1e6 if d.frames else 0.0
        assert len(d.frames) > 10 and span_s > 0.5, r["body"]["file"]  # pictures throughout
        assert len(d.audio) / d.rate >= 0.8 * span_s, r["body"]["file"]  # and sound beside them
    rec_stop = next(r for r in records if r["type"] == "record_stop")
    assert rec_stop["body"]["cause"] == "button"
    assert verify_store(unit.path, identity=unit.agency.identity).ok


def test_a_burst_of_microphone_overflows_is_one_record_not_hundreds(
    unit: Unit, tmp_path: Path
) -> None:
    """A starved machine overflows the microphone many times a second; a
    signed, synced record for each starved the loop further (the emulated
    unit wrote 8 a second and a button press waited minutes). Overflows
    under a second apart are one record with their count and samples."""

    def ready(rec: Any) -> None:
        rec.devices.microphone.overflow(38)  # 38 blocks of 120 ms lost in a row: 4.6 s

    rec, log, records = _run(
        unit, tmp_path, {**BASE, "seconds": 14, "at": [{"t": 1, "press": "record"}]},
        on_ready=ready,
    )  # fmt: skip
    gaps = [r["body"] for r in records if r["type"] == "fault" and r["body"]["what"] == "audio_gap"]
    assert len(gaps) == 1, gaps
    assert gaps[0]["overflows"] == 38 and gaps[0]["samples"] == 38 * CHUNK, gaps
    assert gaps[0]["until_us"] - gaps[0]["at_us"] >= 4_000_000
    assert verify_store(unit.path, identity=unit.agency.identity).ok
