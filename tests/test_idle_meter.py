"""The voice detector hears the sound only while a spoken note may be
awaited (firmware/runtime.py `_note_may_come`): not while the unit idles
with its pre-record filling, where nothing reads what it would make (issue
28: idle costs at most half of recording). A note after a pause is judged
as before (tests/test_own_voice.py, tests/test_recorder.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from capture.pipeline import Capture
from capture.vad import FRAME_US
from firmware.devices import parse_devices
from firmware.recording import run_scenario
from firmware.scenario import parse
from hal.media import PcmChunk

from .conftest import make_unit

RATE = 16_000


class _Sink:
    def write(self, data: bytes | memoryview) -> None:
        pass

    def close(self, info: object) -> None:
        pass


def _noise(seconds: float, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 3000, int(seconds * RATE))).astype("<i2").tobytes()


def test_idle_the_unit_s_sound_reaches_no_voice_detector_recording_it_does(
    tmp_path: Path,
) -> None:
    unit = make_unit(tmp_path / "unit")
    scenario = {
        "seconds": 16,
        "size": "320x180",
        "clock": "synced",
        "segment_seconds": 8,
        "prerecord_seconds": 2,
        "at": [{"t": 8, "press": "record"}, {"t": 12, "hold": "record"}],
        "sound": [{"t": 0, "source": "noise:-30", "seconds": 16}],  # heard all along
    }
    rec = run_scenario(
        unit.path,
        parse(scenario, tmp_path),
        log=lambda line: None,
        devices=parse_devices({"camera": {"backend": "sim", "size": "320x180"}}),
    )
    span = rec.capture.meter.span_us
    assert span is not None
    # (the scenario's clock is the unit's) from the press, not the 8 s of
    # idle before it, to the stop the hold makes (its 2.5 s, a block or so
    # after), not the idle after it to 16 s
    assert 8.0 <= span[0] / 1e6 <= 9.0, span
    assert 12.0 <= span[1] / 1e6 <= 15.0, span


def test_metering_off_then_on_starts_a_fresh_frame_at_the_sound_after_the_hole() -> None:
    cap = Capture(lambda index, start_us: _Sink())
    pcm = _noise(1.0)
    cap.push_audio(PcmChunk(pcm[:1000], 0, RATE))  # 500 samples: a frame and a part
    cap.meter_sound(False)
    cap.push_audio(PcmChunk(pcm, 1_000_000, RATE))
    cap.played(pcm, 1_000_000)
    assert cap.meter.span_us == (0, FRAME_US)  # nothing from while it was off
    cap.meter_sound(True)
    cap.push_audio(PcmChunk(pcm[: 2 * 480], 5_000_000, RATE))
    # the part frame from before the hole is not joined to the sound after it
    span = cap.meter.span_us
    assert span == (0, 5_000_000 + FRAME_US)
    assert cap.meter.judge(4_000_000, 6_000_000).t_us.tolist() == [5_000_000]
