"""The live unit: the real-time runtime on simulated devices driven only
through gpiozero mock pins, the Pi backends inside it against library-like
doubles, `bodycam run` without --sim, and refused `[devices]` tables."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firmware.devices import DeviceConfigError, parse_devices
from firmware.recording import run_live, run_scenario
from firmware.runtime import GestureIn, Inbox, Recorder
from firmware.scenario import parse
from hal.audio_pi import FRAMES
from hal.media import EncodedFrame, PcmChunk
from sealing import layout
from sealing.verify import verify_store

from .conftest import Unit, make_unit
from .doubles import picamera2_double, pyaudio_double
from .media_check import continuous_runs, decode

ROOT = Path(__file__).resolve().parent.parent
SPEECH = "I am resuming because the driver came back to the car and is talking to me again."
DAY = {
    "seconds": 21,
    "size": "320x180",
    "clock": "synced",
    "segment_seconds": 8,
    "prerecord_seconds": 1,
    "at": [
        {"t": 1, "press": "record"},
        {"t": 4, "press": "photo"},
        {"t": 6, "press": "function"},
        {"t": 8, "press": "record"},
        {"t": 15, "double": "function"},
        {"t": 18, "hold": "record"},
    ],
    "sound": [{"t": 8.6, "speech": SPEECH, "seconds": 6}],
}
OUTPUTS = ("led_power", "led_audio", "led_video", "buzzer", "vibration")


def _history(pin: Any, t0: float) -> list[tuple[float, bool]]:
    """MockPin.states as (seconds since `t0` on the monotonic clock, state):
    gpiozero keeps each change's time since the one before, and the last
    change's monotonic instant."""
    t = pin._last_change - sum(s.timestamp for s in pin.states)
    out = []
    for s in pin.states:
        t += s.timestamp
        out.append((t - t0, bool(s.state)))
    return out


def faults_records(report: Any) -> list[dict[str, Any]]:
    return [r for r in report.records if r["type"] == "fault"]


def _on_spans(hist: list[tuple[float, bool]]) -> list[tuple[float, float]]:
    spans, start = [], None
    for t, on in hist:
        if on and start is None:
            start = t
        elif not on and start is not None:
            spans.append((start, t))
            start = None
    return spans


@pytest.fixture(scope="module")
def live_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Unit, Recorder, dict, float]:
    tmp = tmp_path_factory.mktemp("live")
    unit = make_unit(tmp / "unit")
    pins: dict[str, Any] = {}

    def on_ready(rec: Recorder) -> None:
        d = rec.devices
        for name in OUTPUTS:
            pins[name] = d.pin_factory.pin(getattr(d.pins, name))
        pins["t0"] = time.monotonic()

    t = time.monotonic()
    rec = run_scenario(
        unit.path, parse(DAY, tmp), realtime=True, on_ready=on_ready, log=lambda line: None
    )
    return unit, rec, pins, time.monotonic() - t


def test_live_day_on_mock_pins(live_day: tuple[Unit, Recorder, dict, float]) -> None:
    unit, rec, pins, wall = live_day
    assert wall >= 20  # real time, not virtual
    report = verify_store(unit.path, identity=unit.agency.identity, escrow_key=unit.agency.escrow)
    assert report.ok, report.problems
    types = [r["type"] for r in report.records]
    for t in ("record_start", "still", "pause", "resume", "resume_note", "mark", "record_stop"):
        assert t in types, t
    note = next(r for r in report.records if r["type"] == "resume_note")["body"]
    assert note["given"] is True and note["file"] and note["offset_us"] is not None
    played = rec.prompts_played
    order = [
        "tone_start",
        "start_notice",
        "shutter",
        "tone_stop",
        "tone_start",
        "state_reason",
        "note_ok",
        "marked",
        "tone_stop",
        "end_phrase",
    ]
    it = iter(played)
    assert all(p in it for p in order), played  # in this order, others may come between
    assert rec.devices.speaker.samples_played > 16_000  # PCM reached the speaker
    # LEDs (docs/STATES.md): red = video recording, yellow = audio recording, green steady.
    # Each change comes after what caused it and before the next thing the
    # driver does (seconds from its start): however busy the machine, never
    # a window of wall time
    t0 = pins["t0"]
    for led in ("led_video", "led_audio"):
        spans = _on_spans(_history(pins[led], t0))
        assert len(spans) == 2, (led, spans)  # start..pause, resume..stop
        (a0, a1), (b0, b1) = spans
        assert 1.0 <= a0 < 4.0 and 6.0 <= a1 < 8.0, (led, spans)  # record at 1 s, pause at 6
        assert 8.0 <= b0 < 15.0 and b1 >= 19.5, (led, spans)  # resume at 8; held 18 + 1.5 s
    power = _history(pins["led_power"], t0)
    on = _on_spans(power)  # on from power-on until the unit closes its pins: never blinking
    assert len(on) == 1 and on[0][0] < 0 and on[0][1] > 21, on
    # buzzer: a pulse at each start and stop; vibration: those plus the photo and the mark.
    # A pulse is 0.2 s; the bound above it only catches one left on (a busy machine
    # switches it off late, never early)
    buzz = _on_spans(_history(pins["buzzer"], t0))
    vib = _on_spans(_history(pins["vibration"], t0))
    assert len(buzz) == 4 and all(0.15 < e - s < 1.5 for s, e in buzz), buzz
    assert len(vib) == 6


def test_virtual_and_realtime_give_the_same_records(
    live_day: tuple[Unit, Recorder, dict, float], tmp_path: Path
) -> None:
    unit, _, _, _ = live_day
    other = make_unit(tmp_path / "unit")
    run_scenario(other.path, parse(DAY, tmp_path), log=lambda line: None)

    def types(u: Unit) -> list[str]:
        # where a rollover falls depends on which frame a press lands on, so a run of
        # segments counts as one entry; a busy machine can stall the real-time run
        # (a `stall` record, tests/test_stalls.py); the live run's pre-use check
        # (firmware/preuse.py) comes when it is done, and a scenario runs none;
        # every other record must match in order
        out: list[str] = []
        for r in verify_store(u.path).records:
            if r["type"] in ("stall", "selftest") or (
                r["type"] == "segment" and out and out[-1] == "segment"
            ):
                continue
            out.append(r["type"])
        return out

    assert types(other) == types(unit)
    checks = [r for r in verify_store(unit.path).records if r["type"] == "selftest"]
    assert len(checks) == 1 and checks[0]["body"]["beside"] == "recorder", checks


def _live(
    unit: Path,
    steps: list[tuple[float, Any]],
    seconds: float,
    log: Callable[[str], None] = lambda line: None,
) -> Recorder:
    """run_live with a driver thread doing `steps` (at s, fn(rec)) then stopping."""

    def on_ready(rec: Recorder) -> None:
        def drive() -> None:
            t0 = time.monotonic()
            for at, fn in steps:
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                fn(rec)
            time.sleep(max(0.0, t0 + seconds - time.monotonic()))
            rec.request_stop("test done")

        threading.Thread(target=drive, daemon=True).start()

    return run_live(unit, log=log, on_ready=on_ready)


def _press(rec: Recorder) -> None:
    p = rec.devices.pin_factory.pin(rec.devices.pins.record)
    p.drive_low()
    time.sleep(0.1)  # a finger, not contact bounce
    p.drive_high()


PI_TOML = (
    '[devices.camera]\nbackend = "picamera2"\nsize = "320x180"\n'
    '[devices.microphone]\nbackend = "pyaudio"\ndevice = "USB Audio"\n'
    "[policy]\nsegment_s = 8.0\nprerecord_s = 1.0\n"
)


def test_pi_backends_in_the_live_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    picamera2_double.install(monkeypatch)
    monkeypatch.setitem(sys.modules, "pyaudio", pyaudio_double)
    pyaudio_double.PyAudio.source = staticmethod(lambda n, k: bytes(2 * k))  # type: ignore[assignment]
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(PI_TOML)
    sock = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock))
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock))
    stalled_at: list[float] = []

    def restart_camera(rec: Recorder) -> None:  # timestamps start from 0 again
        cam = rec.devices.camera
        cam.cam.stop_recording()  # type: ignore[union-attr]
        cam.cam.start_recording(cam.encoder, cam.output)  # type: ignore[union-attr]

    def overflow(rec: Recorder) -> None:
        rec.devices.microphone._pa.overflow(5)  # type: ignore[union-attr]

    def stall(rec: Recorder) -> None:
        stalled_at.append(time.monotonic())
        rec.devices.camera.cam.stall()  # type: ignore[union-attr]

    _live(
        unit.path,
        [(0.8, _press), (2.5, restart_camera), (3.5, overflow), (5.0, stall)],
        seconds=9.0,
    )
    server.settimeout(0.1)
    notes = []
    with server:
        while True:
            try:
                notes.append(server.recv(64).decode())
            except (TimeoutError, BlockingIOError):
                break
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    faults = [r["body"] for r in report.records if r["type"] == "fault"]
    assert any(f["what"] == "camera" and "no frame" in f["reason"] for f in faults), faults
    gaps = [f for f in faults if f["what"] == "audio_gap"]
    # five blocks lost (hal/audio_pi.py FRAMES samples each)
    assert len(gaps) == 1 and 4 * FRAMES <= gaps[0]["samples"] <= 7 * FRAMES, gaps
    assert "READY=1" in notes and "WATCHDOG=1" in notes
    # one pat a second while frames and audio come; none after the camera's
    # stall was noticed. Bounded by the unit's own clock (from its boot record
    # to the "no frame" fault), not by a guess at how fast a busy machine ran
    boot = next(r for r in report.records if r["type"] == "boot")
    silent = next(f for f in faults_records(report) if "no frame" in f["body"].get("reason", ""))
    ran_s = (silent["mono_us"] - boot["mono_us"]) / 1e6
    pats = notes.count("WATCHDOG=1")
    assert notes[-1] == "STOPPING=1" and 3 <= pats <= int(ran_s) + 1, (pats, ran_s, notes)
    assert boot["body"]["mode"] == "live"
    pts, audio_end = [], 0
    for rec_files in continuous_runs(unit.path, unit.agency.identity):
        for _, data in rec_files:
            d = decode(data)
            pts += [t for t, _ in d.frames]
            audio_end = max(audio_end, d.audio_start_us + len(d.audio) * 1_000_000 // d.rate)
    steps = [b - a for a, b in zip(pts, pts[1:], strict=False)]
    assert all(s > 0 for s in steps) and max(steps) < 200_000  # one timeline across restart
    assert audio_end - pts[-1] > 2_000_000  # sound went on after the camera stalled


def test_camera_absent_at_start_records_sound_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picamera2_double.install(monkeypatch)
    monkeypatch.setattr(picamera2_double.Picamera2, "cameras", 0)
    monkeypatch.setitem(sys.modules, "pyaudio", pyaudio_double)
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(PI_TOML)
    _live(unit.path, [(0.5, _press)], seconds=3.5)
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    fault = next(r["body"] for r in report.records if r["type"] == "fault")
    assert fault["what"] == "camera" and "did not complete" in fault["reason"]
    files = [f for rec in continuous_runs(unit.path, unit.agency.identity) for f in rec]
    assert files
    for _, data in files:
        d = decode(data)
        assert not d.frames and len(d.audio) > 16_000


def test_bodycam_run_live_until_sigterm(unit: Unit) -> None:
    (unit.path / "unit.toml").write_text(
        '[devices.camera]\nsize = "320x180"\n'
        "[policy]\nrecord_on_power_on = true\n"
        "segment_s = 8.0\nprerecord_s = 1.0\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "firmware.cli", "run", "--unit", str(unit.path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("record ") and "record_start" in line:
            break
    time.sleep(2.5)
    child.send_signal(signal.SIGTERM)
    rest = child.stdout.read()
    assert child.wait(timeout=60) == 0, rest
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    stop = [r for r in report.records if r["type"] == "record_stop"][-1]
    assert stop["body"]["cause"] == "shutdown:SIGTERM"
    assert [r for r in report.records if r["type"] == "segment"]
    assert not [p for p in os.listdir(unit.path / "store" / "segments") if "partial" in p]


BAD_DEVICES = [
    ({"camera": {"backend": "usb"}}, r"\[devices.camera\] backend = 'usb'"),
    ({"camera": {"fps": "30"}}, r"\[devices.camera\] fps"),
    ({"camera": {"fps": 0}}, r"\[devices.camera\] fps"),
    ({"camera": {"size": "1279x720"}}, r"\[devices.camera\] size"),
    ({"camera": {"bitrate": True}}, r"\[devices.camera\] bitrate"),
    ({"camera": {"backend": "replay"}}, r"needs file"),
    ({"camera": {"zoom": 2}}, r"\[devices.camera\] zoom = 2: unknown key"),
    ({"microphone": {"device": 3}}, r"\[devices.microphone\] device"),
    ({"speaker": {"language": "fr"}}, r"\[devices.speaker\] language"),
    ({"gpio": {"record": 40}}, r"\[devices.gpio\] record"),
    ({"gpio": {"record": 27}}, r"share a pin"),
    ({"gps": {"baud": 1234}}, r"\[devices.gps\] baud"),
    ({"battery": {"bus": -1}}, r"\[devices.battery\] bus"),
    ({"storage": {"backend": "nfs"}}, r"\[devices.storage\] backend"),
    ({"rtc": "yes"}, r"\[devices\] rtc = 'yes': must be a table"),
    ({"lidar": {}}, r"\[devices\] lidar = \{\}: unknown device"),
    ({"gpio": {"buzzer": 19}}, r"buzzer = 19: GPIO 19 is I2S LRCLK"),
    ({"gpio": {"record": 14}}, r"record = 14: GPIO 14 is UART TX"),
    ({"camera": {"lens_position": 20}}, r"\[devices.camera\] lens_position"),
    ({"camera": {"lens_position": 1, "autofocus": True}}, r"cannot go with autofocus"),
]


@pytest.mark.parametrize(("table", "match"), BAD_DEVICES, ids=[m for _, m in BAD_DEVICES])
def test_bad_devices_are_refused_with_the_key_named(table: dict, match: str) -> None:
    with pytest.raises(DeviceConfigError, match=match):
        parse_devices(table)


def test_bodycam_run_refuses_a_bad_devices_table_before_starting(unit: Unit) -> None:
    (unit.path / "unit.toml").write_text('[devices.camera]\nbackend = "picamera3"\n')
    before = (unit.path / "store" / "chain.jsonl").read_bytes()
    r = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "run", "--unit", str(unit.path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "[devices.camera] backend = 'picamera3'" in r.stderr
    assert "Traceback" not in r.stderr
    assert (unit.path / "store" / "chain.jsonl").read_bytes() == before  # nothing started


def _pi5_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: list, seconds: float):
    picamera2_double.install(monkeypatch, "pi5")
    monkeypatch.setitem(sys.modules, "pyaudio", pyaudio_double)
    pyaudio_double.PyAudio.source = staticmethod(lambda n, k: bytes(2 * k))  # type: ignore[assignment]
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(PI_TOML)
    rec = _live(unit.path, steps, seconds=seconds)
    return unit, rec, verify_store(unit.path, identity=unit.agency.identity)


def _tap(line: str) -> Any:
    def tap(rec: Recorder) -> None:
        p = rec.devices.pin_factory.pin(getattr(rec.devices.pins, line))
        p.drive_low()
        time.sleep(0.1)
        p.drive_high()

    return tap


def _restart_camera(rec: Recorder) -> None:  # libav flushes, then timestamps start from 0 again
    cam = rec.devices.camera
    cam.cam.stop_recording()  # type: ignore[union-attr]
    cam.cam.start_recording(cam.encoder, cam.output)  # type: ignore[union-attr]


def test_pi5_libav_camera_in_the_live_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(picamera2_double.LibavH264Encoder, "pyav_major", 10)  # Debian's PyAV
    # record, pause, resume (a keyframe request), the encoder restarted, a still
    steps = [(0.8, _press), (2.3, _tap("function")), (3.8, _press), (5.0, _restart_camera)]
    steps.append((5.8, _tap("photo")))
    unit, rec, report = _pi5_live(tmp_path, monkeypatch, steps, seconds=7.5)
    assert report.ok, report.problems
    faults = [r["body"] for r in report.records if r["type"] == "fault"]
    assert not [f for f in faults if f["what"] == "camera"], faults
    assert any(r["type"] == "resume" for r in report.records)
    (still,) = [r["body"] for r in report.records if r["type"] == "still"]
    assert still["still"]["source"] == "video" and still["still"]["width"] > 0  # where it came from
    cam = rec.devices.camera
    assert cam.last_still is not None and cam.last_still.source == "video"  # type: ignore[union-attr]
    enc = cam.encoder  # type: ignore[union-attr]
    assert enc._key_frames_requested == enc._key_frames_generated == 1
    resumed_key = []
    for rec_files in continuous_runs(unit.path, unit.agency.identity):
        pts = []
        for i, (_, data) in enumerate(rec_files):
            d = decode(data)
            pts += [t for t, _ in d.frames]
            if i == 0:
                resumed_key.append(d.first_video_key)
        steps_us = [b - a for a, b in zip(pts, pts[1:], strict=False)]
        assert all(s > 0 for s in steps_us) and max(steps_us) < 200_000  # one timeline
    assert len(resumed_key) == 2 and all(resumed_key)  # the resumed file starts decodable


def test_pi5_forced_keyframe_failure_is_a_camera_fault_with_its_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the venv's PyAV (>= 14): picamera2's `frame.pict_type = "I"` raises in its thread
    steps = [(0.8, _press), (2.3, _tap("function")), (3.8, _press)]
    _, _, report = _pi5_live(tmp_path, monkeypatch, steps, seconds=5.5)
    assert report.ok, report.problems
    faults = [
        r["body"] for r in report.records if r["type"] == "fault" and r["body"]["what"] == "camera"
    ]
    assert len(faults) == 1, faults
    assert "forced keyframe" in faults[0]["reason"] and "TypeError" in faults[0]["reason"]


def test_a_failed_still_is_recorded_and_the_video_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(picamera2_double.LibavH264Encoder, "pyav_major", 10)

    def break_next_capture(rec: Recorder) -> None:
        rec.devices.camera.cam.fail_capture = RuntimeError("ISP timeout")  # type: ignore[union-attr]

    steps = [(0.8, _press), (2.0, break_next_capture), (2.1, _tap("photo"))]
    unit, _, report = _pi5_live(tmp_path, monkeypatch, steps, seconds=5.0)
    assert report.ok, report.problems
    faults = [r["body"] for r in report.records if r["type"] == "fault"]
    assert [f["what"] for f in faults] == ["still"] and "ISP timeout" in faults[0]["reason"]
    assert not [r for r in report.records if r["type"] == "still"]
    # the pictures after the failed still were recorded: video was not switched off
    (files,) = continuous_runs(unit.path, unit.agency.identity)
    pts = [t for _, data in files for t, _ in decode(data).frames]
    assert (pts[-1] - pts[0]) / 1e6 > 3.0


# 32 s idle (the 30 s pre-record full), record, pause 2 s later
PRERECORD_DAY = {
    "seconds": 36,
    "size": "320x180",
    "clock": "synced",
    "segment_seconds": 64,
    "prerecord_seconds": 30,
    "at": [{"t": 32, "press": "record"}, {"t": 34, "press": "function"}],
}


def test_the_first_press_lights_the_led_before_the_prerecord_is_sealed(tmp_path: Path) -> None:
    """The press that starts a recording with 30 s of pre-record shows the
    recording (LEDs, tone, notice) at once: the pre-record is handed to the
    segmenter in shares of a turn afterwards, and the file still holds every
    frame of it, in order, up to the pause."""
    unit = make_unit(tmp_path / "unit")
    lit: list[int] = []

    def on_ready(rec: Recorder) -> None:
        show = rec.devices.indicators.show

        def watched(lights: Any) -> None:
            if rec.indicators.video and not lit:
                lit.append(rec.capture.backlog)  # what was still to seal as the LED came on
            show(lights)

        rec.devices.indicators.show = watched  # type: ignore[method-assign]

    rec = run_scenario(
        unit.path, parse(PRERECORD_DAY, tmp_path), on_ready=on_ready, log=lambda _: None
    )
    assert lit and lit[0] >= 29 * 30, lit  # nearly all of the 30 s were still to go
    assert rec.capture.backlog == 0
    runs = continuous_runs(unit.path, unit.agency.identity)
    assert len(runs) == 1
    frames = [n for _, data in runs[0] for _, n in decode(data).frames]
    assert frames == list(range(frames[0], frames[0] + len(frames)))  # none lost, none twice
    assert len(frames) >= 31 * 30  # the pre-record (from a keyframe) and the 2 s after


def test_media_waits_for_the_tick_and_a_press_wakes_the_loop() -> None:
    """Frames and sound blocks do not wake the loop (each wake-up costs CPU,
    issue 28): they are taken at its next tick, in arrival order. A press
    wakes it at once."""
    clock = time.monotonic_ns
    inbox = Inbox(lambda: clock() // 1000)
    inbox.put(EncodedFrame(b"\0\0\0\1\x65", 1, True))
    inbox.put(PcmChunk(bytes(960), 2, 16_000))
    t0 = time.monotonic()
    inbox.wait(0.3)
    assert time.monotonic() - t0 >= 0.29  # slept to the timeout: media woke nothing
    threading.Timer(0.05, lambda: inbox.put(GestureIn("press", "record", 3))).start()
    t0 = time.monotonic()
    inbox.wait(5.0)
    assert time.monotonic() - t0 < 2.0  # the press woke it
    kinds = [type(inbox.get_nowait()[0]).__name__ for _ in range(3)]
    assert kinds == ["EncodedFrame", "PcmChunk", "GestureIn"] and not inbox.control_waiting


def test_the_live_loop_turns_at_its_tick_not_per_item(tmp_path: Path) -> None:
    """`bodycam run`'s loop, recording: about ten turns a second (its tick,
    and a press), not one per frame and sound block (issue 28), and the
    recording is whole: every frame the camera gave in the window sealed."""
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(
        '[devices.camera]\nsize = "320x180"\n[policy]\nsegment_s = 8.0\nprerecord_s = 1.0\n'
    )
    seen = {"turns": 0, "frames": 0, "counting": False}

    def on_ready(rec: Recorder) -> None:
        pump, handle = rec.pump, rec._handle

        def counted_pump() -> bool:
            seen["turns"] += seen["counting"]
            return pump()

        def counted_handle(item: Any, at: int) -> None:
            seen["frames"] += seen["counting"] and isinstance(item, EncodedFrame)
            handle(item, at)

        rec.pump = counted_pump  # type: ignore[method-assign]
        rec._handle = counted_handle  # type: ignore[method-assign]

        def drive() -> None:
            time.sleep(0.5)
            _press(rec)
            time.sleep(1.0)  # past the press and the pre-record's flush
            seen["counting"] = True
            time.sleep(3.0)
            seen["counting"] = False
            rec.request_stop("test done")

        threading.Thread(target=drive, daemon=True).start()

    run_live(unit.path, log=lambda _: None, on_ready=on_ready)
    assert seen["frames"] >= 3.0 * 30 * 0.8, seen  # the camera delivered, the loop took them
    assert seen["turns"] <= 3.0 * 15, seen  # the tick's 10 a second, with room; per item: 90+
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    runs = continuous_runs(unit.path, unit.agency.identity)
    frames = [n for _, data in runs[0] for _, n in decode(data).frames]
    assert frames == list(range(frames[0], frames[0] + len(frames)))  # none lost, none twice


def test_a_press_waiting_puts_the_prerecord_flush_aside(tmp_path: Path) -> None:
    """While the 30 s pre-record is handed to the segmenter, a press that
    arrives is taken before another share of it: the flush never runs with
    a press waiting (on virtual time the whole flush is one turn, so without
    this the press would wait for all of it)."""
    unit = make_unit(tmp_path / "unit")
    seen: dict[str, int] = {"put": 0, "taken_before_next_share": 0, "shares_with_press_waiting": 0}

    def on_ready(rec: Recorder) -> None:
        drain = rec.capture.drain
        gesture = rec._gesture

        def watched_drain(items: int) -> int:
            if rec.inbox.control_waiting:
                seen["shares_with_press_waiting"] += 1
            if rec.capture.backlog > 20 * 30 and not seen["put"]:
                seen["put"] = 1  # mid-flush: a switch that changes nothing, but is a press
                rec.inbox.put(GestureIn("inactive", "tamper", rec.now_us()))
            return drain(items)

        def watched_gesture(g: GestureIn) -> None:
            if g.line == "tamper" and rec.capture.backlog > 0:
                seen["taken_before_next_share"] += 1
            gesture(g)

        rec.capture.drain = watched_drain  # type: ignore[method-assign]
        rec._gesture = watched_gesture  # type: ignore[method-assign]

    rec = run_scenario(
        unit.path, parse(PRERECORD_DAY, tmp_path), on_ready=on_ready, log=lambda _: None
    )
    assert seen == {"put": 1, "taken_before_next_share": 1, "shares_with_press_waiting": 0}
    assert rec.capture.backlog == 0
    runs = continuous_runs(unit.path, unit.agency.identity)
    frames = [n for _, data in runs[0] for _, n in decode(data).frames]
    assert frames == list(range(frames[0], frames[0] + len(frames)))  # none lost, none twice


def _small_unit(tmp_path: Path, prerecord_s: float = 1.0) -> Unit:
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(
        '[devices.camera]\nsize = "320x180"\n[policy]\nsegment_s = 8.0\n'
        f"prerecord_s = {prerecord_s}\n"
    )
    return unit


def _hold_segment_fsyncs(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Event, threading.Event, threading.Event]:
    """Hold the fsyncs of the store's segments directory (a file's seal, a
    new file's name made durable) shut while `armed` is set, until `gate`
    is; `held` is set once one waits. Returns (armed, gate, held)."""
    import sealing.store as store_module

    armed, gate, held = threading.Event(), threading.Event(), threading.Event()
    real = store_module.fsync_dir

    def gated(path: Path) -> None:
        if armed.is_set() and not gate.is_set() and path.name == layout.SEGMENTS:
            held.set()
            gate.wait(GATE_S)  # bounds a hang only: the test opens it
        real(path)

    monkeypatch.setattr(store_module, "fsync_dir", gated)
    return armed, gate, held


# A held step's gate outlasts every wait on the loop: a loop held on it runs
# the wait out with the gate still shut, and the test's note says so. Both
# only bound a hang; a test that passes never waits them out.
WAIT_S = 20.0
GATE_S = 3 * WAIT_S


def _wait_until(done: Callable[[], bool]) -> None:
    """Until `done()` (bounded: a loop held up runs it out)."""
    deadline = time.monotonic() + WAIT_S
    while not done() and time.monotonic() < deadline:
        time.sleep(0.0005)


def _wait_for(rec: Recorder, mode: str) -> None:
    """Until the machine is in `mode`."""
    _wait_until(lambda: rec.machine.state.mode == mode)


def _press_function(rec: Recorder) -> None:
    """The function button (pause): its press counts when its double-press window ends."""
    fn = rec.devices.pin_factory.pin(rec.devices.pins.function)
    fn.drive_low()
    time.sleep(0.1)
    fn.drive_high()


def _pause_while_held(
    rec: Recorder, held: threading.Event, gate: threading.Event, seen: list[tuple[str, bool, bool]]
) -> None:
    """Once a step is held on `gate` (`held` set), press pause and note the
    state while the gate is still shut, then open it. Done on the loop, the
    held step keeps the press until the gate opens, and the note says so."""
    held.wait(WAIT_S)  # bounds a hang only
    _press_function(rec)
    _wait_for(rec, "paused")
    seen.append((rec.machine.state.mode, held.is_set(), gate.is_set()))
    gate.set()


def _verified_types(unit: Unit) -> list[str]:
    """The store verified whole (with the agency's identity): its record types."""
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    return [r["type"] for r in report.records]


def test_a_press_is_not_kept_behind_the_seal_of_the_paused_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pause seals its file (fsync, rename, directory fsync) and writes its
    records; a record press a moment later is taken at once, not after those
    fsyncs: the live loop hands them to the store's committer (issue 28). The
    seal is held shut on a gate here, so the test asks what happened while it
    was shut rather than how long anything took."""
    unit = _small_unit(tmp_path)
    armed, gate, held = _hold_segment_fsyncs(monkeypatch)
    seen: list[tuple[str, bool, bool]] = []

    def pause_then_record(rec: Recorder) -> None:
        armed.set()
        _press_function(rec)
        _wait_for(rec, "paused")
        _press(rec)
        # inline, the loop sits in the gated seal and the press stays queued
        # until the gate opens: this waits out its bound and the check fails
        _wait_for(rec, "recording")
        seen.append((rec.machine.state.mode, held.is_set(), gate.is_set()))
        gate.set()

    _live(unit.path, [(0.5, _press), (2.5, pause_then_record)], 5.0)
    # recording while the pause's seal was held, not yet let through
    assert seen == [("recording", True, False)], seen
    types = _verified_types(unit)
    assert types.count("pause") == 1 and types.count("resume") == 1, types


def test_a_press_is_not_kept_behind_the_seal_of_a_file_ended_at_its_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file ends at `segment_s` while frames are taken in; its seal, its
    record and the next file's directory fsync go to the store's committer
    with the rest of the loop's turn, so a pause pressed while they are held
    is taken at once. They are held on a gate: the test asks what happened
    while it was shut."""
    unit = _small_unit(tmp_path)
    # a file's seal and the next file's name made durable
    armed, gate, held = _hold_segment_fsyncs(monkeypatch)
    seen: list[tuple[str, bool, bool]] = []

    def pause_at_the_rollover(rec: Recorder) -> None:
        _wait_until(lambda: rec.capture.segmenter.recording)
        armed.set()  # the first file is open: the next of these steps is its end at 8 s
        _pause_while_held(rec, held, gate, seen)

    _live(unit.path, [(0.5, _press), (1.0, pause_at_the_rollover)], 11.0)
    # paused while the first file's seal was held
    assert seen == [("paused", True, False)], seen
    assert _verified_types(unit).count("segment") >= 2


def test_a_press_is_not_kept_behind_a_record_a_timer_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of microphone overflows is recorded by the loop's each-second
    timer once it is over. That record goes to the store's committer with
    the rest of the turn, so a pause pressed while its write is held is
    taken at once; appended on the loop, it would keep the press until the
    write ends. The write is held on a gate: the test asks what happened
    while it was shut."""
    from sealing.store import Store

    unit = _small_unit(tmp_path)
    gate, held = threading.Event(), threading.Event()
    real_write = Store._write

    def gated_write(self: Store, job: Any) -> None:
        if job.last.type == "fault" and job.last.body.get("what") == "audio_gap":
            held.set()
            gate.wait(GATE_S)  # bounds a hang only: the test opens it
        real_write(self, job)

    monkeypatch.setattr(Store, "_write", gated_write)
    seen: list[tuple[str, bool, bool]] = []

    def gap_then_pause(rec: Recorder) -> None:
        rec.devices.microphone.overflow(3)  # type: ignore[union-attr]
        _pause_while_held(rec, held, gate, seen)  # the gap's record, a second after the burst

    _live(unit.path, [(0.5, _press), (1.5, gap_then_pause)], 5.0)
    assert seen == [("paused", True, False)], seen
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    faults = [r["body"] for r in report.records if r["type"] == "fault"]
    gaps = [b for b in faults if b["what"] == "audio_gap"]
    assert len(gaps) == 1 and gaps[0]["overflows"] >= 1, gaps


def test_a_press_is_not_kept_behind_the_open_file_s_fdatasync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The open file's tail is fdatasynced five times a second; the loop
    hands the sync to the store's committer with the rest of its turn, so a
    pause pressed while one is held (a slow card) is taken at once. The
    syncs are held on a gate: the test asks what happened while it was shut."""
    unit = _small_unit(tmp_path)
    armed, gate, held = threading.Event(), threading.Event(), threading.Event()
    real = os.fdatasync

    def gated(fd: int) -> None:
        if armed.is_set() and not gate.is_set():
            held.set()
            gate.wait(GATE_S)  # bounds a hang only: the test opens it
        real(fd)

    monkeypatch.setattr(os, "fdatasync", gated)
    seen: list[tuple[str, bool, bool]] = []

    def pause_while_a_sync_is_held(rec: Recorder) -> None:
        armed.set()
        _pause_while_held(rec, held, gate, seen)  # the next sync of the open file

    _live(unit.path, [(0.5, _press), (1.5, pause_while_a_sync_is_held)], 4.0)
    assert seen == [("paused", True, False)], seen
    types = _verified_types(unit)
    assert types.count("pause") == 1 and types.count("segment") >= 1, types


def test_a_press_after_a_pause_is_not_kept_behind_the_prerecord(tmp_path: Path) -> None:
    """A pause moments after a press with a full pre-record used to seal the
    rest of the pre-record before the loop went on, and a record press just
    after it waited that long (issue 28's press p99). Now the paused file
    takes the rest a share a turn: the next press changes the state at once
    and finishes the file after. Handing the pre-record over is made slow
    here, so the test asks what happened first rather than how long it took;
    the chain keeps its order (the file's record after its pause, before
    the resume). The resume's keyframe is asked for before the paused file
    is finished, so the resumed file opens on a picture from the press."""
    unit = _small_unit(tmp_path, prerecord_s=3.0)
    slow = threading.Event()
    seen: list[tuple[str, bool]] = []
    asked: list[bool] = []  # the paused file still open when a keyframe was asked for

    def slow_prerecord(rec: Recorder) -> None:
        feed = rec.capture._feed
        camera = rec.devices.camera
        assert camera is not None
        ask = camera.request_keyframe

        def noted_ask() -> None:
            if slow.is_set():
                asked.append(rec.capture.closing)
            ask()

        camera.request_keyframe = noted_ask  # type: ignore[method-assign]

        def slow_feed(item: Any) -> None:
            if slow.is_set() and isinstance(item, EncodedFrame):
                time.sleep(0.05)  # about 4.5 s for the 3 s pre-record's pictures
            feed(item)

        rec.capture._feed = slow_feed  # type: ignore[method-assign]

    def record_pause_record(rec: Recorder) -> None:
        slow.set()
        _press(rec)
        _wait_for(rec, "recording")
        _press_function(rec)
        _wait_for(rec, "paused")
        _press(rec)
        _wait_for(rec, "recording")
        # the old loop sealed the pre-record inside the pause: by the time it
        # took this press, the paused file was long closed
        seen.append((rec.machine.state.mode, rec.capture.closing))
        slow.clear()

    _live(unit.path, [(0.0, slow_prerecord), (3.5, record_pause_record)], 10.0)
    assert seen == [("recording", True)], seen
    assert asked == [True], asked
    types = _verified_types(unit)
    pause, resume = types.index("pause"), types.index("resume")
    assert "segment" in types[pause:resume], types  # the paused file, sealed after its pause


def test_a_loop_behind_its_queue_does_not_take_the_devices_for_silent(tmp_path: Path) -> None:
    """For 3 s each frame takes the loop longer than a frame lasts, so it
    falls over a second behind what the devices put (as on the emulated
    card). The devices delivered all along: no fault, and no flapping of
    fault and `recovered` records that would keep the loop behind."""
    unit = make_unit(tmp_path / "unit")
    (unit.path / "unit.toml").write_text(
        '[devices.camera]\nsize = "320x180"\n[policy]\nsegment_s = 8.0\nprerecord_s = 1.0\n'
    )
    slow = threading.Event()
    behind: list[float] = []

    def on_ready(rec: Recorder) -> None:
        handle = rec._handle

        def slow_handle(item: Any, at: int) -> None:
            if slow.is_set() and isinstance(item, EncodedFrame):
                time.sleep(0.06)  # two frames' time for each frame
                behind.append((rec.now_us() - at) / 1e6)
            handle(item, at)

        rec._handle = slow_handle  # type: ignore[method-assign]

        def drive() -> None:
            time.sleep(0.5)
            _press(rec)
            time.sleep(1.0)
            slow.set()
            time.sleep(3.0)
            slow.clear()
            time.sleep(4.0)  # it catches up
            rec.request_stop("test done")

        threading.Thread(target=drive, daemon=True).start()

    run_live(unit.path, log=lambda _: None, on_ready=on_ready)
    assert max(behind) > 1.2, max(behind)  # further behind than a stall's threshold
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    faults = [r["body"] for r in report.records if r["type"] in ("fault", "recovered")]
    assert not faults, faults[:4]
