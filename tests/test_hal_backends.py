"""Real backends against doubles that behave like their libraries (no Pi
here): picamera2 (its encoder thread, per-start timestamps, stalls),
pyaudio (callback thread, overruns, blocking writes), smbus2 (MAX17048)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hal.audio_pi import FRAMES, PyAudioMicrophone, PyAudioSpeaker
from hal.battery import Max17048, SimBattery
from hal.camera_pi import PiCamera
from hal.media import DeviceFault, EncodedFrame, PcmChunk
from hal.pacing import LiveClock
from hal.ports import AudioGap, Played
from hal.storage import SimStorage, space

from .doubles import picamera2_double, pyaudio_double
from .doubles.smbus_double import SMBus


def _wait(cond, seconds: float = 60.0) -> None:
    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        time.sleep(0.01)
    assert cond()


def test_picamera2_port_maps_per_start_timestamps_onto_one_timeline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    picamera2_double.install(monkeypatch)
    got: list[EncodedFrame] = []
    threads: set[str] = set()

    def on_frame(f: EncodedFrame) -> None:
        threads.add(threading.current_thread().name)
        got.append(f)

    cam = PiCamera(LiveClock(), width=320, height=180, fps=30)
    assert cam.encoder.repeat and cam.encoder.iperiod == 30
    assert cam.cam.controls["AfMode"] == 2  # Camera Module 3 autofocus on
    cam.start(on_frame, pytest.fail)
    _wait(lambda: len(got) >= 10)
    assert threads == {"v4l2-poll"}  # never the caller's thread
    now = time.monotonic_ns() // 1000
    assert abs(got[-1].pts_us - now) < 200_000  # on the unit's monotonic clock
    assert got[0].keyframe and got[0].data.startswith(b"\x00\x00\x00\x01")
    # the encoder restarts: picamera2's timestamps begin at 0 again; ours go on
    cam.cam.stop_recording()
    n = len(got)
    cam.cam.start_recording(cam.encoder, cam.output)
    _wait(lambda: len(got) >= n + 5)
    pts = [f.pts_us for f in got]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))
    assert pts[n] - pts[n - 1] < 500_000  # continues where it was, not from 0
    k = len(got)
    cam.request_keyframe()
    _wait(lambda: len(got) >= k + 3)
    assert any(f.keyframe for f in got[k : k + 3])
    assert cam.still().startswith(b"\xff\xd8")
    cam.cam.stall()  # frames stop, nothing raised; stop_recording would block for ever
    t = time.monotonic()
    cam.stop(timeout_s=0.5)
    assert time.monotonic() - t < 30  # bounded: picamera2's own stop would never return


def test_picamera2_absent_is_a_device_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    picamera2_double.install(monkeypatch)
    monkeypatch.setattr(picamera2_double.Picamera2, "cameras", 0)
    with pytest.raises(DeviceFault, match="did not complete"):
        PiCamera(LiveClock())


def test_picamera2_is_not_imported_off_a_pi() -> None:
    import hal.camera_pi  # noqa: F401 - importing the adapter must not import picamera2

    assert "picamera2" not in sys.modules or "picamera2_double" in str(sys.modules["picamera2"])


def test_pyaudio_microphone_reports_overruns_as_gaps_in_place() -> None:
    """At 30 ms blocks (unit.toml block_ms = 30): many overruns in a short test."""
    mic = PyAudioMicrophone(LiveClock(), device="USB Audio", module=pyaudio_double, block=480)
    chunks: list[PcmChunk] = []
    gaps: list[AudioGap] = []
    threads: set[str] = set()

    def on_chunk(c: PcmChunk) -> None:
        threads.add(threading.current_thread().name)
        chunks.append(c)

    mic.start(on_chunk, gaps.append, pytest.fail)
    _wait(lambda: len(chunks) >= 5)
    mic._pa.overflow(10)
    _wait(lambda: gaps and len(chunks) >= 12)
    mic.stop()
    assert threads == {"portaudio"}
    assert len(chunks[0].data) == 960
    assert len(gaps) == 1 and 4000 <= gaps[0].samples <= 5600
    i = next(i for i, c in enumerate(chunks) if c.pts_us > gaps[0].at_us)
    # the audio after the gap keeps its true place: ~300 ms after the block before it
    assert 280_000 <= chunks[i].pts_us - chunks[i - 1].pts_us <= 400_000
    steady = [b.pts_us - a.pts_us for a, b in zip(chunks[1 : i - 1], chunks[2:i], strict=False)]
    assert set(steady) == {30_000}


def test_the_default_pyaudio_block_keeps_the_timeline() -> None:
    """By default (SOUND_BLOCK_MS, 120 ms) PortAudio hands 1,920 frames at a
    time, each block placed 120 ms after the one before."""
    assert FRAMES == 1920
    mic = PyAudioMicrophone(LiveClock(), device="USB Audio", module=pyaudio_double)
    chunks: list[PcmChunk] = []
    mic.start(chunks.append, lambda g: pytest.fail(f"a gap: {g}"), pytest.fail)
    _wait(lambda: len(chunks) >= 4)
    mic.stop()
    assert {len(c.data) for c in chunks} == {3840}
    assert {b.pts_us - a.pts_us for a, b in zip(chunks, chunks[1:], strict=False)} == {120_000}


def test_pyaudio_speaker_never_blocks_reports_what_it_played_and_fails() -> None:
    pyaudio_double.PyAudio.sink = bytearray()
    pyaudio_double.PyAudio.dac_times = []
    spk = PyAudioSpeaker(LiveClock(), device="USB Audio", module=pyaudio_double)
    played: list[Played] = []
    threads: set[str] = set()

    def on_played(p: Played) -> None:
        threads.add(threading.current_thread().name)
        played.append(p)

    spk.start(on_played)
    sound = (np.arange(16_000) % 200 + 1).astype("<i2").tobytes()  # one second, never zero
    spk.play("start_notice", sound)
    assert spk.busy()  # back at once: a blocking write would have played it all by now
    _wait(lambda: not spk.busy())
    assert spk.played == ["start_notice"] and threads == {"portaudio"}
    # every sample is reported, in order, with when it left the speaker: the DAC
    # time PortAudio gave on its own clock, mapped onto the monotonic clock
    assert b"".join(p.pcm for p in played) == sound
    sink = bytes(pyaudio_double.PyAudio.sink)
    first = sink.index(sound[: 2 * FRAMES])
    dac = pyaudio_double.PyAudio.dac_times[first // (2 * FRAMES) :]
    for p, t in zip(played, dac, strict=False):
        assert abs(p.at_us - t * 1e6) < 5_000, (p.at_us, t)
    # with nothing to play the stream stops: PortAudio asks for no silence;
    # not before the sound has left the speaker (its end drops the buffer)
    # (its thread gone: no callback can come, so no sleep can prove more)
    _wait(lambda: not spk._stream.is_active() and not spk._stream._thread.is_alive())
    assert sound in bytes(pyaudio_double.PyAudio.sink)
    quiet = len(pyaudio_double.PyAudio.sink)
    assert spk._stream.starts == 1
    spk.play("tone_start", sound[:6400])  # the next prompt starts it again, played whole
    _wait(lambda: not spk.busy())
    assert spk.played == ["start_notice", "tone_start"] and spk._stream.starts == 2
    assert b"".join(p.pcm for p in played) == sound + sound[:6400]
    _wait(lambda: not spk._stream.is_active())
    assert sound[:6400] in bytes(pyaudio_double.PyAudio.sink)[quiet:]  # whole, tail and all
    # a device that fails while it plays: the next prompt is refused, by name
    spk.play("long", sound * 10)
    spk._pa.output_failed = True
    _wait(lambda: not spk._stream.is_active())
    with pytest.raises(DeviceFault, match="speaker: the output stream stopped"):
        spk.play("tone_start", b"\0\0")
    spk.stop()


def test_a_speaker_that_will_not_start_is_a_device_fault() -> None:
    pyaudio_double.PyAudio.sink = bytearray()
    spk = PyAudioSpeaker(LiveClock(), device="USB Audio", module=pyaudio_double)
    spk.start(lambda p: None)
    spk._pa.output_failed = True  # gone between prompts: found when the next one starts
    with pytest.raises(DeviceFault, match=r"speaker: .*Unanticipated host error"):
        spk.play("tone_start", b"\1\0" * 1600)
    assert not spk.busy()  # what it could not play is not waiting
    with pytest.raises(DeviceFault, match="Unanticipated host error"):
        spk.play("tone_start", b"\1\0")  # and it stays refused
    assert pyaudio_double.PyAudio.sink.count(b"\1\0") == 0
    spk.stop()


def test_a_hushed_speaker_drops_what_it_has_not_said() -> None:
    pyaudio_double.PyAudio.sink = bytearray()
    spk = PyAudioSpeaker(LiveClock(), device="USB Audio", module=pyaudio_double)
    spk.start(lambda p: None)
    spk.play("start_notice", b"\1\0" * 160_000)  # ten seconds
    assert spk.busy()
    spk.hush()
    assert not spk.busy()
    # the stream ends by itself once what it took has left the speaker (its
    # thread gone: nothing more can be asked for); unhushed, it would play
    # ten seconds and still be running
    _wait(lambda: not spk._stream.is_active() and not spk._stream._thread.is_alive())
    # at most the block taken at the start and the one in flight at the hush
    assert pyaudio_double.PyAudio.sink.count(b"\1\0") <= 2 * FRAMES
    spk.stop()


def test_pyaudio_devices_are_chosen_by_name() -> None:
    with pytest.raises(DeviceFault, match="no input device named 'Blue Yeti'.*USB Audio"):
        PyAudioMicrophone(LiveClock(), device="Blue Yeti", module=pyaudio_double)
    old = pyaudio_double.PyAudio.devices
    pyaudio_double.PyAudio.devices = []
    try:
        with pytest.raises(DeviceFault, match="no audio devices"):
            PyAudioMicrophone(LiveClock(), module=pyaudio_double)
    finally:
        pyaudio_double.PyAudio.devices = old


def test_max17048_reads_soc_voltage_and_rate() -> None:
    # 3.9 V, 57.5 %, discharging at -10.4 %/h (datasheet encodings)
    bus = SMBus({0x02: int(3.9 / 78.125e-6), 0x04: int(57.5 * 256), 0x16: (-50) & 0xFFFF})
    r = Max17048(bus).read()
    assert r.percent == 57 and 3899 <= r.volts_mv <= 3900 and not r.charging
    assert 320 <= r.minutes_left <= 335
    with pytest.raises(OSError):
        Max17048(SMBus({}, address=0x40)).read()


def test_sim_battery_and_storage(tmp_path: Path) -> None:
    b = SimBattery(percent=10, hours=10)
    b.drain(1800)
    assert b.read().percent == 5 and b.read().minutes_left == 30
    s = SimStorage(tmp_path)
    assert s.space() == space(tmp_path)
    s.free_override = 10 << 20
    assert s.space().free_bytes == 10 << 20 and s.space().total_bytes == space(tmp_path).total_bytes


def test_picamera2_watermark_runs_in_pre_callback_before_encoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    import av
    import numpy as np

    from capture.sei import FrameTime
    from capture.watermark import Watermark, box, render, text_for

    picamera2_double.install(monkeypatch)
    wm = Watermark(
        "BC-9", "OFFICER-1", lambda us: FrameTime(1_800_000_000_000_000, "holdover", "dock")
    )
    errors: list[str] = []
    got: list[EncodedFrame] = []
    cam = PiCamera(LiveClock(), width=640, height=360, fps=30)
    assert cam.overlay(wm.burn, errors.append)
    cam.start(got.append, pytest.fail)
    _wait(lambda: len(got) >= 5)
    with av.open(io.BytesIO(b"".join(f.data for f in got)), format="h264") as c:
        picture = next(iter(c.decode(video=0))).to_ndarray(format="gray").astype(float)
    text = text_for("BC-9", "OFFICER-1", FrameTime(1_800_000_000_000_000, "holdover", "x"))
    strip = render(text, 360, 640)
    x0, y0, x1, y1 = box(strip, 640, 360)
    assert np.abs(picture[y0:y1, x0:x1] - strip.luma[:, : x1 - x0]).mean() < 12
    assert "HOLDOVER" in text
    # a hook that raises is dropped and reported once; the picture goes on
    assert cam.overlay(lambda px, fmt, us: 1 / 0, errors.append)
    n = len(got)
    _wait(lambda: len(got) >= n + 10)
    assert errors == ["overlay dropped: division by zero"]
    cam.stop()


def test_picamera2_fixed_focus_and_the_rtc_found_by_its_driver(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from hal.rtc import LinuxRtc

    picamera2_double.install(monkeypatch)
    cam = PiCamera(LiveClock(), width=320, height=180, lens_position=0.5)
    assert cam.cam.controls == {"AfMode": 0, "LensPosition": 0.5}  # manual, not hunting
    # a Pi 5: the SoC's RTC is rtc0, the fitted DS3231 (rtc-ds1307 driver) rtc1
    for n, driver in (("rtc0", "rpi-rtc"), ("rtc1", "rtc-ds1307 1-0068")):
        (tmp_path / n).mkdir()
        (tmp_path / n / "name").write_text(driver + "\n")
    found = LinuxRtc.find(tmp_path, Path("/dev"))
    assert found.device == Path("/dev/rtc1") and found.sysfs == tmp_path / "rtc1"
    (tmp_path / "rtc1" / "name").write_text("something-else\n")
    assert LinuxRtc.find(tmp_path, Path("/dev")).device == Path("/dev/rtc0")  # none of ours


def _jpeg_size(jpeg: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as img:
        img.load()  # decodes all of it: a truncated JPEG fails here
        return img.size


def test_picamera2_still_in_standby_is_the_full_sensor_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    picamera2_double.install(monkeypatch)
    cam = PiCamera(LiveClock(), width=320, height=180)
    hook = cam.overlay(lambda px, fmt, us: None, pytest.fail)
    callback = cam.cam.pre_callback
    assert hook
    jpeg = cam.still()  # no video running: the still mode, Camera Module 3's 12 MP
    assert _jpeg_size(jpeg) == picamera2_double.SENSOR_RESOLUTION == (4608, 2592)
    assert cam.last_still is not None and cam.last_still.source == "sensor"
    assert b"still_source=sensor size=4608x2592" in jpeg[:200]
    # back as it was: stopped, in the video mode, the overlay in place
    assert not cam.cam.started and cam.cam.camera_config is cam.video_config
    assert cam.cam.pre_callback is callback
    got: list[EncodedFrame] = []
    cam.start(got.append, pytest.fail)
    _wait(lambda: len(got) >= 3)
    cam.stop()


@pytest.mark.parametrize("platform", ["vc4", "pi5"])
def test_picamera2_still_while_recording_is_a_video_frame_and_no_frame_is_lost(
    monkeypatch: pytest.MonkeyPatch, platform: str
) -> None:
    picamera2_double.install(monkeypatch, platform)
    got: list[EncodedFrame] = []
    cam = PiCamera(LiveClock(), width=320, height=180, fps=30)
    cam.start(got.append, pytest.fail)
    _wait(lambda: len(got) >= 10)
    n, stops = len(got), cam.cam.stop_count
    jpeg = cam.still()
    _wait(lambda: len(got) >= n + 15)
    assert _jpeg_size(jpeg) == (320, 180)  # the video stream's frame, not a mode switch
    assert cam.last_still is not None and cam.last_still.source == "video"
    assert cam.cam.stop_count == stops and cam.cam.loop_error is None
    steps = [b.pts_us - a.pts_us for a, b in zip(got, got[1:], strict=False)]
    assert max(steps) < 2.5 * 33_333, steps  # the frame flow never paused
    cam.stop()


def test_picamera2_still_failures_are_device_faults_and_video_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hal import camera_pi

    picamera2_double.install(monkeypatch)
    got: list[EncodedFrame] = []
    cam = PiCamera(LiveClock(), width=320, height=180, fps=30)
    cam.start(got.append, pytest.fail)
    _wait(lambda: len(got) >= 5)
    # raised by the capture job on picamera2's thread, handed over by its Future
    cam.cam.fail_capture = OSError("image file is truncated")
    with pytest.raises(DeviceFault, match="truncated"):
        cam.still()
    n = len(got)
    _wait(lambda: len(got) >= n + 10)  # the recording goes on
    assert cam.cam.loop_error is None
    # a stalled camera never runs the job: bounded, not a hang of the firmware loop
    monkeypatch.setattr(camera_pi, "STILL_TIMEOUT_S", 0.3)
    cam.cam.stall()
    time.sleep(0.6)
    # picamera2 keeps the last request and hands it over: too old to be "now"
    with pytest.raises(DeviceFault, match="s old"):
        cam.still()
    t = time.monotonic()
    with pytest.raises(DeviceFault, match="no still within"):  # none left: the job waits
        cam.still()
    assert time.monotonic() - t < 30  # bounded, not for ever
    cam.stop(timeout_s=0.3)


def test_picamera2_pi5_libav_encoder_delays_restarts_and_forces_keyframes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    picamera2_double.install(monkeypatch, "pi5")
    monkeypatch.setattr(picamera2_double.LibavH264Encoder, "pyav_major", 10)  # Debian's PyAV
    got: list[tuple[EncodedFrame, int, str]] = []

    def on_frame(f: EncodedFrame) -> None:
        got.append((f, time.monotonic_ns() // 1000, threading.current_thread().name))

    cam = PiCamera(LiveClock(), width=320, height=180, fps=30)
    assert isinstance(cam.encoder, picamera2_double.LibavH264Encoder)
    cam.encoder.iperiod = 0  # libav: no GOP keyframes after the first, so any other is forced
    cam.start(on_frame, pytest.fail)
    _wait(lambda: len(got) >= 15)
    assert {name for *_, name in got} == {"picamera2-loop"}  # the camera's thread, not ours
    lags = sorted(arrived - f.pts_us for f, arrived, _ in got)
    assert lags[len(lags) // 2] > 40_000  # x264's frame threads: packets come frames later
    # restart: libav flushes what it holds on the stopping thread, then counts from 0 again
    cam.cam.stop_recording()
    assert got[-1][2] == "MainThread"
    n = len(got)
    cam.cam.start_recording(cam.encoder, cam.output)
    _wait(lambda: len(got) >= n + 10)
    pts = [f.pts_us for f, *_ in got]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))
    assert pts[n] - pts[n - 1] < 500_000  # the timeline goes on
    k = len(got)
    assert not any(f.keyframe for f, *_ in got[n + 1 : k])
    cam.request_keyframe()
    _wait(lambda: len(got) >= k + 8)
    assert any(f.keyframe for f, *_ in got[k : k + 8])
    cam.stop()


def _pi5_forced_keyframe_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[PiCamera, list[EncodedFrame], list[str]]:
    """A Pi 5 camera running, whose forced keyframe has just failed."""
    picamera2_double.install(monkeypatch, "pi5")  # the venv's PyAV (>= 14): pict_type "I" raises
    errors: list[str] = []
    got: list[EncodedFrame] = []
    cam = PiCamera(LiveClock(), width=320, height=180, fps=30)
    cam.start(got.append, errors.append)
    _wait(lambda: len(got) >= 5)
    cam.request_keyframe()
    _wait(lambda: bool(errors))
    return cam, got, errors


def test_picamera2_pi5_forced_keyframe_failing_in_the_camera_thread_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cam, got, errors = _pi5_forced_keyframe_failed(monkeypatch)
    assert "forced keyframe" in errors[0] and "TypeError" in errors[0], errors
    n = len(got)
    _wait(lambda: len(got) >= n + 10)  # picamera2's loop lives on: frames keep coming
    assert cam.cam.loop_error is None
    cam.request_keyframe()  # not asked again: it would only fail again
    assert cam.encoder._key_frames_requested == 1
    assert len(errors) == 1
    cam.stop()


def test_picamera2_double_loses_its_loop_to_an_unguarded_encoder_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The double's fidelity: picamera2's own encoder on PyAV >= 14, no guard."""
    picamera2_double.install(monkeypatch, "pi5")
    pc = picamera2_double.Picamera2()
    pc.configure(pc.create_video_configuration(main={"size": (320, 180)}))
    frames: list[bytes] = []

    class Out(picamera2_double.Output):
        def outputframe(self, frame: bytes, *a: object, **k: object) -> None:
            frames.append(frame)

    enc = picamera2_double.LibavH264Encoder()
    pc.start_recording(enc, Out())
    _wait(lambda: len(frames) >= 5)
    enc.force_key_frame()
    _wait(lambda: pc.loop_error is not None)
    assert isinstance(pc.loop_error, TypeError)
    n = len(frames)
    time.sleep(0.3)
    assert len(frames) == n  # frames just stop; nothing reached the application


@pytest.mark.parametrize("platform", ["vc4", "pi5"])
def test_picamera2_restart_after_an_encoder_fault_is_a_fresh_encoder_at_true_times(
    monkeypatch: pytest.MonkeyPatch, platform: str
) -> None:
    """What the runtime's restart does (stop, start): a new encoder, whose
    frames sit at their sensor times although picamera2 counts from 0 again."""
    picamera2_double.install(monkeypatch, platform)
    monkeypatch.setattr(picamera2_double.LibavH264Encoder, "pyav_major", 10)
    got: list[EncodedFrame] = []
    errors: list[str] = []
    cam = PiCamera(LiveClock(), width=320, height=180, fps=30)
    cam.start(got.append, errors.append)
    _wait(lambda: len(got) >= 5)
    first = cam.encoder
    first.fail_next = OSError(5, "Input/output error")  # raised in picamera2's loop thread
    _wait(lambda: bool(errors))
    assert "the encoder failed" in errors[0] and "Input/output error" in errors[0], errors
    assert cam.cam.loop_error is None  # the guard kept picamera2's loop alive
    cam.stop()
    n = len(got)
    cam.start(got.append, errors.append)
    assert cam.encoder is not first and cam.cam.recordings_started == 2
    _wait(lambda: len(got) >= n + 10)
    assert got[n].keyframe  # a new encoder starts with one
    sensor = set(cam.cam.sensor_us.values())
    assert all(f.pts_us in sensor for f in got), "every frame at its picture's sensor time"
    pts = [f.pts_us for f in got]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))
    assert cam.timeline.restarts == 1
    # the new encoder reports its own fault: the old one's once-only report is not in the way
    cam.encoder.fail_next = RuntimeError("again")
    _wait(lambda: len(errors) == 2)
    assert "again" in errors[1]
    # a stop that never finishes (a stalled camera) makes the next start a DeviceFault
    cam.cam.stall()
    cam.stop(timeout_s=0.3)
    with pytest.raises(DeviceFault, match="has not finished"):
        cam.start(got.append, errors.append)


def test_picamera2_pi5_a_failed_forced_keyframe_is_not_asked_again_after_a_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cam, got, errors = _pi5_forced_keyframe_failed(monkeypatch)
    cam.stop()
    cam.start(got.append, errors.append)
    assert cam.encoder.force_broken  # what the old encoder learnt
    cam.request_keyframe()  # would only fail again, and be one more restart
    assert cam.encoder._key_frames_requested == 0
    n = len(got)
    _wait(lambda: len(got) >= n + 10)
    assert len(errors) == 1
    cam.stop()


def test_stopping_the_microphone_twice_leaves_the_speaker_playing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found on the emulated unit: the self-test stops the microphone after
    listening, and closing the devices stopped it again. PortAudio counts its
    initialisations for the whole process, so that second terminate() ended
    the speaker's stream ('PortAudio not initialized') and the self-test
    crashed. A stop is now done once, however often it is asked for."""
    monkeypatch.setattr(pyaudio_double, "_INITS", [0])  # this test's PortAudio alone
    mic = PyAudioMicrophone(LiveClock(), device="USB Audio", module=pyaudio_double)
    speaker = PyAudioSpeaker(LiveClock(), device="USB Audio", module=pyaudio_double)
    mic.start(lambda c: None, lambda g: None, pytest.fail)
    mic.stop()
    mic.stop()  # the devices closed after the self-test's own stop
    speaker.start(lambda played: None)
    speaker.play("tone", bytes(3200))  # still playing: PortAudio still up for it
    speaker.stop()
    speaker.stop()
    # each was terminated once: the count is back to none, as PortAudio's would be
    pa = pyaudio_double.PyAudio()
    stream = pa.open(rate=16000, channels=1, format=pyaudio_double.paInt16)
    pa.terminate()
    with pytest.raises(OSError, match="not initialized"):
        stream.stop_stream()
