"""Stalls are evidence (firmware/stalls.py, docs/FORMAT.md 4.1): a recorder
that was stopped, or a device that went silent, leaves one `stall` record
with its span; nothing dated inside the span is in any file (judged by
decoding the files), the file ends before it and the recording goes on in
a new file from a keyframe after it.

The live test stops a real `bodycam run` with SIGSTOP; the virtual ones
freeze a scenario's unit (`freeze_s`) on virtual time, exactly repeatable,
with the simulated camera holding its usual backlog of frames or
back-filling every missed frame, back-dated."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from firmware.recording import run_live, run_scenario
from firmware.runtime import Recorder
from firmware.scenario import ScenarioError, parse
from firmware.stalls import StallWatch
from hal.camera_sim import BACKLOG_FRAMES
from hal.microphone_sim import BACKLOG_BLOCKS, CHUNK
from sealing.verify import verify_store

from .conftest import Unit, make_unit
from .media_check import decrypted_segments, ffmpeg_warnings

ROOT = Path(__file__).resolve().parent.parent
TICKS = 1 << 33  # MPEG-TS timestamps: 33 bits at 90 kHz
FRAME_US = 33_334
HANG_S = 120.0  # only bounds a hang; every wait below is for a condition


def _ticks(us: int) -> int:
    return round(us * 9 / 100) % TICKS


def _media(data: bytes) -> tuple[list[int], int | None, int | None, bool]:
    """(picture times, first and last sound instant, first picture is a key)
    of one file, in 90 kHz ticks as the file has them."""
    pics: list[int] = []
    sound: list[int] = []
    key = False
    with av.open(io.BytesIO(data), format="mpegts") as c:
        for packet in c.demux():
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    key = key or (not pics and bool(frame.key_frame))
                    pics.append(int(frame.pts))
                elif isinstance(frame, av.AudioFrame):
                    sound += [int(frame.pts), int(frame.pts) + frame.samples * 90_000 // 16_000]
    return pics, (min(sound) if sound else None), (max(sound) if sound else None), key


def _check_nothing_inside(unit: Unit, stall: dict[str, Any]) -> list[tuple[dict, bytes]]:
    """No segment claims the span, no picture lies inside the camera's span
    and no sound inside the microphone's in any file, each file plays clean
    alone and the files joined do too; the file after the stall starts with
    a keyframe."""
    lo, hi = stall["from_us"], stall["to_us"]
    (c_lo, c_hi), m_hi = stall["spans"]["camera"], stall["spans"]["microphone"][1]
    segments = decrypted_segments(unit.path, unit.agency.identity)
    assert len(segments) >= 2
    before = [s for s in segments if s[0]["body"]["start"]["mono_us"] < lo]
    after = [s for s in segments if s[0]["body"]["start"]["mono_us"] >= hi]
    assert len(before) + len(after) == len(segments)  # none starts inside
    assert before and after
    for r, _ in before:  # none runs over it: its last picture, the camera's last, lasts a frame
        assert r["body"]["end"]["mono_us"] <= c_lo + FRAME_US, (r["body"]["end"], stall)
    assert _ticks(lo) < _ticks(hi)  # the span does not straddle a 33-bit wrap (26.5 h up)
    for _, data in segments:
        pics, s0, s1, _ = _media(data)
        inside = [p for p in pics if _ticks(c_lo) < p < _ticks(c_hi)]
        assert not inside, (len(inside), stall)
        if s0 is not None and s1 is not None:
            # wholly before or after; before, the last AAC frame (64 ms) is completed
            # with silence up to the last picture's end, as at every stop
            assert s1 <= _ticks(c_lo + FRAME_US + 32_000) or s0 >= _ticks(m_hi), (s0, s1, stall)
        assert ffmpeg_warnings(["-f", "mpegts", "-i", "pipe:0"], data) == ""
    assert _media(after[0][1])[3], "the file after a stall starts with a keyframe"
    joined = b"".join(data for _, data in segments)
    assert ffmpeg_warnings(["-f", "mpegts", "-i", "pipe:0"], joined) == ""
    return segments


# -- a real recorder, stopped with SIGSTOP ----------------------------------------------


def _wait_for(what: str, ok: Any, child: subprocess.Popen[bytes], out: Path) -> None:
    deadline = time.monotonic() + HANG_S
    while not ok():
        assert child.poll() is None, out.read_text()
        assert time.monotonic() < deadline, f"{what}: {out.read_text()[-2000:]}"
        time.sleep(0.02)


def _taken_in(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [int(ln.split()[2]) for ln in log.read_text().splitlines() if ln.startswith("in v ")]


@pytest.mark.slow
def test_sigstop_of_a_live_recorder_is_one_stall_with_its_span(tmp_path: Path) -> None:
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(
        '[devices.camera]\nsize = "320x180"\n'
        "[policy]\nrecord_on_power_on = true\nsegment_s = 8.0\nprerecord_s = 1.0\n"
    )
    log, out = tmp_path / "media.log", tmp_path / "stdout.txt"
    with out.open("w") as f:
        child = subprocess.Popen(
            [sys.executable, "-m", "firmware.cli", "run", "--unit", str(unit.path)]
            + ["--media-log", str(log)],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        # two seconds of pictures recorded, then stopped for five
        _wait_for("recording", lambda: (p := _taken_in(log)) and p[-1] - p[0] > 2e6, child, out)
        stopped_us = time.monotonic_ns() // 1000
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(5.0)
        os.kill(child.pid, signal.SIGCONT)
        resumed_us = time.monotonic_ns() // 1000
        # three seconds of pictures after it, and the stall written (2 s after it settles)
        _wait_for(
            "pictures after the stall",
            lambda: (p := _taken_in(log)) and p[-1] > resumed_us + 3e6,
            child,
            out,
        )
        _wait_for("the stall record", lambda: "stall recorded" in out.read_text(), child, out)
    finally:
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=HANG_S) == 0, out.read_text()
    report = verify_store(unit.path, identity=unit.agency.identity, escrow_key=unit.agency.escrow)
    assert report.ok, report.problems
    assert not report.notes, report.notes  # the verifier knows the record
    stalls = [r["body"] for r in report.records if r["type"] == "stall"]
    # one stall for the stop; a busy machine may add short ones elsewhere
    # (a loop that waited on the disk): they are records of their own
    (stall,) = [s for s in stalls if s["from_us"] <= stopped_us <= s["to_us"]]
    others = [s for s in stalls if s is not stall]
    assert all(s["to_us"] < stall["from_us"] or s["from_us"] > stall["to_us"] for s in others)
    assert stall["what"] == ["camera", "microphone", "recorder"], stall
    # the span covers the stop: the last sign of life came before it, the first after it
    assert stall["from_us"] <= stopped_us and stall["to_us"] >= resumed_us, (stall, stopped_us)
    assert stall["span_us"] == stall["to_us"] - stall["from_us"] >= 5_000_000
    assert not stall["ongoing"]
    # what the devices' buffers held through the stop came back-dated: refused
    assert 0 < stall["dropped_frames"] <= BACKLOG_FRAMES + 2 and stall["lost_samples"] > 0
    faults = [r["body"] for r in report.records if r["type"] == "fault"]
    assert not faults, faults  # no device was taken for dead, no audio_gap besides the stall
    stop = [r for r in report.records if r["type"] == "record_stop"][-1]
    assert stop["body"]["cause"] == "shutdown:SIGTERM"  # one recording, going on after it
    _check_nothing_inside(unit, stall)


# -- the same on virtual time, exactly ---------------------------------------------------

FROZEN = {
    "seconds": 16,
    "size": "320x180",
    "clock": "synced",
    "segment_seconds": 8,
    "prerecord_seconds": 1,
    "at": [{"t": 1, "press": "record"}, {"t": 4.01, "freeze_s": 5}, {"t": 14, "hold": "record"}],
}


@pytest.mark.parametrize("backfill", [False, True], ids=["buffered", "back-filling"])
def test_a_frozen_unit_records_one_stall_and_no_media_inside_it(
    tmp_path: Path, backfill: bool
) -> None:
    unit = make_unit(tmp_path / "unit")

    def on_ready(rec: Recorder) -> None:
        if backfill:  # a backend that makes up every missed frame, dated when it was due
            rec.devices.camera._task.backlog = None  # type: ignore[union-attr]

    run_scenario(unit.path, parse(FROZEN, tmp_path), log=lambda line: None, on_ready=on_ready)
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    (stall,) = [r["body"] for r in report.records if r["type"] == "stall"]
    assert stall["what"] == ["camera", "microphone", "recorder"]
    assert 5_000_000 <= stall["span_us"] <= 5_000_000 + 2 * FRAME_US, stall
    # what the devices held (their backlog, and the block or frame due as they
    # ran again) or made up was dated inside the span: all refused
    assert stall["dropped_frames"] == (5 * 30 if backfill else BACKLOG_FRAMES + 1), stall
    assert BACKLOG_BLOCKS * CHUNK <= stall["dropped_samples"] <= (BACKLOG_BLOCKS + 2) * CHUNK
    # and the rest of the 5 s the microphone's ring could not hold was reported lost
    assert abs(stall["lost_samples"] + stall["dropped_samples"] - 5 * 16_000) <= 2 * CHUNK, stall
    assert not [r for r in report.records if r["type"] == "fault"]
    segments = _check_nothing_inside(unit, stall)
    # the picture resumed at once: the camera was asked for a keyframe
    first_after = next(r for r, _ in segments if r["body"]["start"]["mono_us"] >= stall["to_us"])
    assert first_after["body"]["start"]["mono_us"] - stall["to_us"] <= 3 * FRAME_US


def test_a_stop_inside_a_turn_is_the_recorders_stall_not_the_devices_faults(
    tmp_path: Path,
) -> None:
    """The unit stops (as SIGSTOP) while the loop is inside a turn, after it
    noted the turn's start: the devices' silence is not judged across it."""
    unit = make_unit(tmp_path / "unit")
    frozen = {**FROZEN, "at": [FROZEN["at"][0], FROZEN["at"][2]]}  # no freeze between turns

    def on_ready(rec: Recorder) -> None:
        handle = rec._handle
        stopped: list[int] = []

        def stop_inside(item: object, at: int) -> None:
            handle(item, at)  # type: ignore[arg-type]
            if not stopped and rec.capture.segmenter.frames_total >= 60:  # 2 s recorded
                stopped.append(rec.now_us())
                rec.clock.mono_ns += 5_000_000_000  # type: ignore[attr-defined]

        rec._handle = stop_inside  # type: ignore[method-assign]

    run_scenario(unit.path, parse(frozen, tmp_path), log=lambda line: None, on_ready=on_ready)
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    assert not [r["body"] for r in report.records if r["type"] == "fault"]
    (stall,) = [r["body"] for r in report.records if r["type"] == "stall"]
    assert "recorder" in stall["what"] and stall["span_us"] >= 5_000_000, stall


def test_freeze_needs_virtual_time(tmp_path: Path) -> None:
    unit = make_unit(tmp_path / "unit")
    with pytest.raises(ScenarioError, match="freeze_s needs virtual time"):
        run_scenario(unit.path, parse(FROZEN, tmp_path), realtime=True, log=lambda line: None)


def test_a_camera_that_goes_silent_is_a_fault_then_a_stall_until_the_stop(
    tmp_path: Path,
) -> None:
    unit = make_unit(tmp_path / "unit")
    scenario = {
        "seconds": 10,
        "size": "320x180",
        "clock": "synced",
        "segment_seconds": 8,
        "prerecord_seconds": 1,
        "at": [{"t": 1, "press": "record"}, {"t": 4, "fault": "camera", "reason": "cable"}],
    }
    run_scenario(unit.path, parse(scenario, tmp_path), log=lambda line: None)
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    faults = [r["body"] for r in report.records if r["type"] == "fault"]
    assert [f["what"] for f in faults] == ["camera"] and "no frame" in faults[0]["reason"]
    (stall,) = [r for r in report.records if r["type"] == "stall"]
    body = stall["body"]
    assert body["what"] == ["camera"] and body["ongoing"] is True
    assert 5_500_000 <= body["span_us"] <= 6_100_000, body  # silent from 4 s to the end at 10 s
    order = [r["type"] for r in report.records]
    assert order.index("stall") < order.index("record_stop")  # told before the stop


# -- a slow loop is not a silent device ---------------------------------------------------


def test_a_blocked_loop_is_a_recorder_stall_and_loses_no_media(tmp_path: Path) -> None:
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(
        '[devices.camera]\nsize = "320x180"\n'
        "[policy]\nrecord_on_power_on = true\nsegment_s = 8.0\nprerecord_s = 1.0\n"
    )
    blocked = {"done": False}

    def on_ready(rec: Recorder) -> None:
        poll = rec.devices.buttons.poll

        def slow_poll() -> None:  # once, 2.5 s into the run: the loop stops turning
            if not blocked["done"] and rec.now_us() - start > 2_500_000:
                blocked["done"] = True
                time.sleep(1.5)
            poll()

        start = rec.now_us()
        rec.devices.buttons.poll = slow_poll  # type: ignore[method-assign]

        def stop_later() -> None:
            while not blocked["done"]:
                time.sleep(0.05)
            time.sleep(4.0)  # the stall settles (2 s) and is written
            rec.request_stop("test done")

        threading.Thread(target=stop_later, daemon=True).start()

    run_live(unit.path, log=lambda line: None, on_ready=on_ready)
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    (stall,) = [r["body"] for r in report.records if r["type"] == "stall"]
    assert stall["what"] == ["recorder"] and stall["span_us"] >= 1_500_000
    assert stall["dropped_frames"] == stall["dropped_samples"] == stall["lost_samples"] == 0
    assert not [r for r in report.records if r["type"] == "fault"]
    # the devices went on delivering: one file, every picture in it, no hole
    (segment,) = decrypted_segments(unit.path, unit.agency.identity)
    pics, _, _, _ = _media(segment[1])
    steps = np.diff(pics)
    assert steps.max() <= 2 * FRAME_US * 9 // 100, steps.max()


# -- the record itself ---------------------------------------------------------------------

GOOD = {
    "from_us": 10_000_000,
    "to_us": 15_000_000,
    "span_us": 5_000_000,
    "what": ["camera", "recorder"],
    "spans": {"camera": [10_000_000, 15_000_000], "recorder": [10_100_000, 14_900_000]},
    "dropped_frames": 3,
    "dropped_samples": 0,
    "lost_samples": 0,
    "ongoing": False,
    "reason": "test",
}
BAD = {
    "ends before it starts": {"from_us": 15_000_000, "to_us": 10_000_000},
    "span not the difference": {"span_us": 4_000_000},
    "unknown part": {"what": ["camera", "speaker"]},
    "unsorted parts": {"what": ["recorder", "camera"]},
    "spans unlike what": {"spans": {"camera": [10_000_000, 15_000_000]}},
    "span outside": {"spans": {"camera": [9_000_000, 15_000_000], "recorder": [1, 2]}},
    "negative count": {"dropped_frames": -1},
    "ongoing not a bool": {"ongoing": 0},
}


@pytest.mark.parametrize("case", ["good", *BAD])
def test_the_verifier_checks_a_stall_record(unit: Unit, case: str) -> None:
    body = {**GOOD, **BAD.get(case, {})}
    with unit.open() as store:
        store.append("stall", body)
    report = verify_store(unit.path)
    if case == "good":
        assert report.ok and not report.notes, (report.problems, report.notes)
    else:
        assert not report.ok
        assert [p.message for p in report.problems if "stall record" in p.message], case


# -- the bookkeeping alone -----------------------------------------------------------------


def test_overlapping_spans_are_one_stall_written_once_settled() -> None:
    w = StallWatch(threshold_us=1_000_000, settle_us=2_000_000)
    w.started(0)
    w.arrived("camera", 100_000)
    w.turn(200_000)
    w.turn(5_200_000)  # the loop: 5 s without a turn
    assert w.arrived("camera", 5_210_000)  # the camera's gap ends: cut the file
    assert w.back_dated("camera", 4_000_000)  # a buffered frame from inside the gap
    assert not w.back_dated("camera", 5_210_000)
    w.arrived("microphone", 5_220_000)
    assert w.lost("microphone", 200_000, 80_000)  # its reported loss belongs to the stall
    assert w.due(6_000_000) == []  # not settled yet
    (stall,) = w.due(7_300_000)
    body = stall.body()
    assert body["what"] == ["camera", "microphone", "recorder"]
    assert (body["from_us"], body["to_us"]) == (0, 5_220_000)
    assert body["dropped_frames"] == 1 and body["lost_samples"] == 80_000
    assert w.due(20_000_000) == [] and w.flush(5_300_000) == []


def test_devices_are_not_silent_for_the_time_the_recorder_was_stopped() -> None:
    w = StallWatch(threshold_us=1_000_000)
    w.started(0)
    w.turn(100_000)
    w.turn(6_100_000)  # stopped for 6 s: nobody delivered, nobody could
    assert w.quiet_us("camera", 6_200_000) == 100_000
    assert w.quiet_us("camera", 7_200_000) == 1_100_000  # silent after it: that counts
    w.arrived("camera", 300_000)
    assert not w.arrived("camera", 900_000, judged=True)  # a gap under the threshold
    assert not w.arrived("camera", 5_000_000, judged=False)  # a restart's gap: the fault's
