"""An encoder fault is not the end of video: the runtime records the fault,
restarts the camera after a bounded backoff, records that video resumed,
and the pictures after the gap sit at their true times (the Pi 4's V4L2
encoder and the Pi 5's libav one, on the picamera2 double, live). A camera
that keeps failing is given up on after the configured restarts, once."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from firmware import machine as m
from firmware.runtime import CameraRestart, Recorder
from firmware.unitconfig import ConfigError, parse
from hal.camera_sim import read_number
from sealing.verify import verify_store

from .conftest import make_unit
from .doubles import picamera2_double, pyaudio_double
from .media_check import continuous_runs, ffmpeg_warnings
from .test_live import _live as live_with_steps

PI_TOML = (
    '[devices.camera]\nbackend = "picamera2"\nsize = "320x180"\n{camera}'
    '[devices.microphone]\nbackend = "pyaudio"\ndevice = "USB Audio"\n'
    "[policy]\nsegment_s = 8.0\nprerecord_s = 1.0\n"
)
RATE = 16_000
TICKS = 1 << 33  # MPEG-TS timestamps: 33 bits of 90 kHz ticks


def _tone(n: int, k: int) -> bytes:
    """The microphone hears a steady 440 Hz tone: any hole in the sound shows."""
    t = np.arange(n, n + k) / RATE
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def _now_us() -> int:
    return time.monotonic_ns() // 1000


def _live(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platform: str,
    steps: list[tuple[float, Callable[[Recorder], None]]],
    seconds: float,
    camera: str = "",
) -> tuple[Any, Recorder, list[str]]:
    """`bodycam run` on the Pi backends (picamera2 and pyaudio doubles) with a
    driver thread doing `steps` (at s, fn(rec)), then a stop request."""
    picamera2_double.install(monkeypatch, platform)
    if platform == "pi5":  # Debian's PyAV: a forced keyframe works (not what is tested here)
        monkeypatch.setattr(picamera2_double.LibavH264Encoder, "pyav_major", 10)
    monkeypatch.setitem(sys.modules, "pyaudio", pyaudio_double)
    monkeypatch.setattr(pyaudio_double.PyAudio, "source", staticmethod(_tone))
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(PI_TOML.format(camera=camera))
    lines: list[str] = []

    rec = live_with_steps(unit.path, steps, seconds, log=lines.append)
    return unit, rec, lines


def _press(rec: Recorder) -> None:
    p = rec.devices.pin_factory.pin(rec.devices.pins.record)
    p.drive_low()
    time.sleep(0.1)
    p.drive_high()


HANG_S = 120.0  # only catches a hang: the steps below wait for what they need


def _until(phase: str, then_s: float) -> Callable[[Recorder], None]:
    """A driver step: wait until the camera's recovery, after at least one
    restart, stands at `phase` (a busy machine restarts it slowly), then let
    the recording run `then_s` more."""

    def step(rec: Recorder) -> None:
        deadline = time.monotonic() + HANG_S
        c = rec.camera_recovery
        while not (c.used >= 1 and c.phase == phase):
            assert time.monotonic() < deadline, f"camera never {phase}"
            time.sleep(0.05)
        time.sleep(then_s)

    return step


def _pictures(data: bytes) -> list[tuple[int, int, bool]]:
    """(pts us, frame number drawn, keyframe) of every decoded picture."""
    out = []
    with av.open(io.BytesIO(data), format="mpegts") as c:
        if not c.streams.video:
            return out
        for frame in c.decode(video=0):
            t = int(frame.pts * frame.time_base * 1_000_000)
            out.append((t, read_number(frame.to_ndarray(format="rgb24")), bool(frame.key_frame)))
    return out


def _sound(data: bytes) -> tuple[int, np.ndarray]:
    """(start us, samples) of a file's sound."""
    pcm, start = [], None
    with av.open(io.BytesIO(data), format="mpegts") as c:
        for frame in c.decode(audio=0):
            if start is None:
                start = int(frame.pts * frame.time_base * 1_000_000)
            pcm.append(frame.to_ndarray().reshape(-1))
    return (start or 0), (np.concatenate(pcm) if pcm else np.zeros(0))


def _same_instant(decoded_us: int, true_us: int) -> bool:
    """The decoded time is the true one, as far as MPEG-TS keeps it (90 kHz, 33 bits)."""
    d = (round(decoded_us * 0.09) - round(true_us * 0.09)) % TICKS
    return min(d, TICKS - d) <= 2


def _camera_records(report: Any) -> tuple[list[dict], list[dict]]:
    faults = [r for r in report.records if r["type"] == "fault" and r["body"]["what"] == "camera"]
    back = [r for r in report.records if r["type"] == "recovered"]
    return faults, back


# -- live: a fault in the encoder's thread mid-recording ----------------------------------


@pytest.mark.parametrize("platform", ["vc4", "pi5"])
def test_an_encoder_fault_mid_recording_is_recorded_and_video_resumes_at_true_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: str
) -> None:
    at: dict[str, int] = {}

    def press(rec: Recorder) -> None:
        at["press"] = _now_us()
        _press(rec)

    def encoder_fault(rec: Recorder) -> None:
        # the next encode raises in picamera2's loop thread (V4L2: the buffer
        # cannot be queued; libav: PyAV raises), as an unlucky frame would
        at["fault"] = _now_us()
        rec.devices.camera.encoder.fail_next = OSError(5, "Input/output error")  # type: ignore[union-attr]

    # the fault shortly before the first file's 8 s are up (it began at the
    # keyframe about 0 s in): during the gap the sound rolls into a file
    # without a picture track, which the camera's return then ends
    # back (after its restart), and 3 s of picture after it
    steps = [(0.8, press), (7.2, encoder_fault), (7.3, _until("ok", 3.0))]
    unit, rec, lines = _live(tmp_path, monkeypatch, platform, steps, seconds=11.5)
    at["end"] = _now_us()
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    # the verifier knows the `recovered` record. On a busy machine the sound,
    # muxed alone through the gap, can run past the restarted camera's first
    # keyframe before it arrives: the file with the picture then begins before
    # the sound-only file ends. Only that overlap is allowed, and below the
    # sound is checked to abut across the files (no stretch twice)
    sound_only = {
        r["body"]["file"]
        for r in report.records
        if r["type"] == "segment" and r["body"]["codecs"] == ["aac"]
    }
    segments = [r["body"]["file"] for r in report.records if r["type"] == "segment"]
    for note in report.notes:
        file = note.split(":")[0]
        assert "overlapping" in note and segments[segments.index(file) - 1] in sound_only, note
    faults, back = _camera_records(report)
    assert len(faults) == 1, faults  # the fault, recorded as before
    assert "the encoder failed" in faults[0]["body"]["reason"], faults
    assert "Input/output error" in faults[0]["body"]["reason"], faults
    assert len(back) == 1, [ln for ln in lines if "camera" in ln]  # and that video came back
    body = back[0]["body"]
    assert body["what"] == "camera" and body["restarts"] == 1
    # after the first backoff (1 s): the first restart (restarts == 1), however
    # long a busy machine takes to bring it up
    after_fault_s = (body["gap_to_us"] - faults[0]["mono_us"]) / 1e6
    assert after_fault_s >= 0.95, after_fault_s
    cam = rec.devices.camera
    assert cam.cam.recordings_started == 2  # type: ignore[union-attr]  # started, restarted once

    files = [f for one in continuous_runs(unit.path, unit.agency.identity) for f in one]
    assert len(files) >= 3
    for name, data in files:  # every sealed file plays without a complaint
        assert ffmpeg_warnings(["-f", "mpegts", "-i", "-"], data) == "", name
    pictures = [p for _, data in files for p in _pictures(data)]
    pts = [t for t, _, _ in pictures]
    numbers = [n for _, n, _ in pictures]
    # no picture invented, repeated or reordered; every one at the instant it was taken
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))
    assert all(b > a for a, b in zip(numbers, numbers[1:], strict=False))
    sensor_us = cam.cam.sensor_us  # type: ignore[union-attr]
    wrong = [(t, n) for t, n, _ in pictures if not _same_instant(t, sensor_us[n])]
    assert not wrong, wrong[:5]
    # one gap: from the last picture before the fault to a keyframe after the restart
    steps = [b - a for a, b in zip(pts, pts[1:], strict=False)]
    gaps = [i for i, s in enumerate(steps) if s > 200_000]
    assert len(gaps) == 1, [steps[i] for i in gaps]
    i = gaps[0]
    before, after = pictures[i], pictures[i + 1]
    assert after[2], "the video after the gap starts at a keyframe"
    assert sensor_us[before[1]] <= at["fault"] + 100_000  # taken before the fault
    assert sensor_us[after[1]] >= at["fault"] + 950_000  # the backoff was waited
    assert _same_instant(before[0], body["gap_from_us"])
    assert _same_instant(after[0], body["gap_to_us"])
    assert sensor_us[numbers[-1]] > at["end"] - 1_500_000  # and the picture went on to the end
    # sound throughout: the files abut, and the tone has no hole from the press to the stop
    spans = [_sound(data) for _, data in files]
    ends = [start + len(pcm) * 1_000_000 // RATE for start, pcm in spans]
    joints = [nxt[0] - end for end, nxt in zip(ends, spans[1:], strict=False)]
    assert all(abs(j) <= 70_000 for j in joints), joints  # within an AAC frame
    pcm = np.concatenate([p for _, p in spans])
    # the recording's sound starts with its first picture; before the press it is
    # the pre-record's silence
    heard_from = (at["press"] - sensor_us[numbers[0]]) * RATE // 1_000_000
    window = RATE // 10
    live = pcm[heard_from + window : len(pcm) - window]
    levels = [
        float(np.sqrt(np.mean(live[k : k + window] ** 2)))
        for k in range(0, len(live) - window, window)
    ]
    assert len(levels) > 50 and min(levels) > 0.1, min(levels)


# -- live: a camera that keeps failing ---------------------------------------------------


def test_a_camera_that_keeps_failing_is_given_up_once_after_its_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def break_camera(rec: Recorder) -> None:
        # every encode of every encoder raises from now on, restarts included
        monkeypatch.setattr(picamera2_double.Encoder, "broken", RuntimeError("ISP gone"))

    unit, rec, lines = _live(
        tmp_path,
        monkeypatch,
        "vc4",
        # given up (however long a busy machine takes), then past the first file's
        # 8 s and 2 s more: the last file holds sound only
        [(0.8, _press), (2.0, break_camera), (2.1, _until("gave_up", 2.0))],
        seconds=10.5,
        camera="restart_attempts = 2\nrestart_backoff_max_s = 2\n",
    )
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    faults, back = _camera_records(report)
    assert not back
    # the fault, then one clear record that the camera was given up on: no loop
    assert len(faults) == 2, faults
    assert "ISP gone" in faults[0]["body"]["reason"]
    gave_up = faults[1]["body"]
    assert gave_up["restarts"] == 2 and gave_up["reason"].startswith("gave up"), gave_up
    assert "ISP gone" in gave_up["reason"]
    # 1 s, then 2 s (capped) between the restarts: at least that long
    took_s = (faults[1]["mono_us"] - faults[0]["mono_us"]) / 1e6
    assert took_s >= 2.9, took_s
    assert rec.devices.camera.cam.recordings_started == 3  # type: ignore[union-attr]
    assert not rec.devices.camera.running  # type: ignore[union-attr]  # left stopped
    assert sum("camera: restart" in ln and "failed" in ln for ln in lines) == 2, lines
    # the recording went on with sound to the end
    assert [r["body"]["cause"] for r in report.records if r["type"] == "record_stop"] == [
        "shutdown:test done"
    ]
    # sealed after the give-up: sound only, up to the stop
    segments = [r["body"] for r in report.records if r["type"] == "segment"]
    last = segments[-1]
    assert last["codecs"] == ["aac"], last
    assert last["end"]["mono_us"] - faults[1]["mono_us"] > 1_500_000


# -- the parts -------------------------------------------------------------------------


def test_the_backoff_doubles_up_to_its_cap_and_is_configured_in_the_camera_table() -> None:
    assert [CameraRestart().delay_us(k) / 1e6 for k in range(6)] == [1, 2, 4, 8, 8, 8]
    cfg = parse(
        {"devices": {"camera": {"restart_attempts": 3, "restart_backoff_max_s": 30}}}
    ).devices
    r = CameraRestart.from_config(cfg)
    assert r.attempts == 3 and [r.delay_us(k) // 10**6 for k in (4, 5, 9)] == [16, 30, 30]
    assert CameraRestart.from_config(parse({}).devices) == CameraRestart()
    for bad in ({"restart_attempts": -1}, {"restart_attempts": "3"}, {"restart_backoff_max_s": 0}):
        with pytest.raises(ConfigError, match=r"\[devices.camera\] restart_"):
            parse({"devices": {"camera": bad}})


def test_the_video_led_comes_back_with_the_camera() -> None:
    mc = m.Machine()
    mc.handle(m.Press("record", 0))
    acts = mc.handle(m.Fault("camera", "encoder", 1))
    assert [a for a in acts if isinstance(a, m.Indicate)][-1].video is False
    acts = mc.handle(m.Restored("camera", 2))
    assert acts == [m.Indicate(video=True, audio=True, warning="clock")]
    assert mc.handle(m.Restored("camera", 3)) == []  # nothing changed: nothing to show
    # back, the camera counts again: losing the microphone now does not stop
    acts = mc.handle(m.Fault("microphone", "gone", 4))
    assert mc.state.mode == "recording" and not any(isinstance(a, m.StopCapture) for a in acts)
