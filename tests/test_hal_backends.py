"""Real backends against faithful doubles of their libraries (no Pi here):
picamera2, pyaudio, smbus2 (MAX17048). And the simulated ones they mirror."""

from __future__ import annotations

import sys

import pytest

from hal.audio_pi import PyAudioMicrophone, PyAudioSpeaker
from hal.battery import Max17048, SimBattery
from hal.camera_pi import PiCamera
from hal.media import DeviceFault, EncodedFrame
from hal.storage import SimStorage, space

from .doubles import picamera2_double, pyaudio_double
from .doubles.smbus_double import SMBus


def test_picamera2_adapter_delivers_access_units(monkeypatch: pytest.MonkeyPatch) -> None:
    picamera2_double.install(monkeypatch)
    got: list[EncodedFrame] = []
    cam = PiCamera(got.append, width=320, height=180, fps=30)
    assert cam.encoder.repeat and cam.encoder.iperiod == 30
    cam.start()
    cam.stop()
    assert len(got) == picamera2_double.Picamera2.frames_per_start
    assert got[0].keyframe and got[30].keyframe and not got[1].keyframe
    assert got[0].data.startswith(b"\x00\x00\x00\x01")  # Annex-B
    assert [f.pts_us for f in got[:3]] == [0, 33333, 66666]
    assert cam.still().startswith(b"\xff\xd8")


def test_picamera2_is_not_imported_off_a_pi() -> None:
    import hal.camera_pi  # noqa: F401 - importing the adapter must not import picamera2

    assert "picamera2" not in sys.modules or "picamera2_double" in str(sys.modules["picamera2"])


def test_pyaudio_adapter_reads_vad_sized_frames() -> None:
    pyaudio_double.PyAudio.source = bytearray(b"\x01\x00" * 1000)
    mic = PyAudioMicrophone(module=pyaudio_double)
    a, b = mic.read(), mic.read()
    assert len(a.data) == 960 and a.pts_us == 0 and b.pts_us == 30_000
    mic.close()
    spk = PyAudioSpeaker(module=pyaudio_double)
    spk.play_pcm("tone_start", b"\0\0" * 10)
    assert spk.played == ["tone_start"] and len(pyaudio_double.PyAudio.sink) >= 20


def test_pyaudio_bad_device_fails_clearly_instead_of_segfaulting() -> None:
    with pytest.raises(DeviceFault, match="no device 5"):
        PyAudioMicrophone(device_index=5, module=pyaudio_double)
    pyaudio_double.PyAudio.devices = 0
    try:
        with pytest.raises(DeviceFault, match="no audio devices"):
            PyAudioMicrophone(module=pyaudio_double)
    finally:
        pyaudio_double.PyAudio.devices = 1


def test_max17048_reads_soc_voltage_and_rate() -> None:
    # 3.9 V, 57.5 %, discharging at -10.4 %/h (datasheet encodings)
    bus = SMBus({0x02: int(3.9 / 78.125e-6), 0x04: int(57.5 * 256),
                 0x16: (-50) & 0xFFFF})
    r = Max17048(bus).read()
    assert r.percent == 57 and 3899 <= r.volts_mv <= 3900 and not r.charging
    assert 320 <= r.minutes_left <= 335
    with pytest.raises(OSError):
        Max17048(SMBus({}, address=0x40)).read()


def test_sim_battery_and_storage() -> None:
    b = SimBattery(percent=10, hours=10)
    b.drain(1800)
    assert b.read().percent == 5 and b.read().minutes_left == 30
    assert SimStorage(100, 90).space().free_bytes == 10
    assert space(__import__("pathlib").Path(".")).total_bytes > 0
