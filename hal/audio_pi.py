"""Microphone and speaker through pyaudio (PortAudio). Imported lazily: the
pyaudio wheel is Pi-only here (it needs portaudio19-dev to build).

pyaudio pitfall handled (platform-facts.md): an explicit input_device_index
that does not exist segfaults the process, so the index is checked against
get_device_count() first. Only the test double has run here.
"""

from __future__ import annotations

import importlib
from typing import Any

from .media import DeviceFault, PcmChunk

RATE = 16_000
FRAMES = 480  # 30 ms: the VAD's frame


class PyAudioMicrophone:
    def __init__(self, device_index: int | None = None, rate: int = RATE,
                 module: Any = None) -> None:
        pyaudio = module or importlib.import_module("pyaudio")
        self._pa = pyaudio.PyAudio()
        count = self._pa.get_device_count()
        if count == 0:
            self._pa.terminate()
            raise DeviceFault("microphone: no audio devices")
        if device_index is not None and not 0 <= device_index < count:
            self._pa.terminate()
            raise DeviceFault(f"microphone: no device {device_index} (have {count})")
        self.rate = rate
        self.samples = 0
        try:
            self._stream = self._pa.open(format=pyaudio.paInt16, channels=1, rate=rate,
                                         input=True, frames_per_buffer=FRAMES,
                                         input_device_index=device_index)
        except OSError as exc:
            self._pa.terminate()
            raise DeviceFault(f"microphone: {exc}") from None

    def read(self, count: int = FRAMES) -> PcmChunk:
        try:
            data = self._stream.read(count, exception_on_overflow=False)
        except OSError as exc:
            raise DeviceFault(f"microphone: {exc}") from None
        chunk = PcmChunk(data, self.samples * 1_000_000 // self.rate, self.rate)
        self.samples += count
        return chunk

    def close(self) -> None:
        self._stream.stop_stream()
        self._stream.close()
        self._pa.terminate()


class PyAudioSpeaker:
    def __init__(self, rate: int = RATE, module: Any = None) -> None:
        pyaudio = module or importlib.import_module("pyaudio")
        self._pa = pyaudio.PyAudio()
        self._stream = self._pa.open(format=pyaudio.paInt16, channels=1, rate=rate,
                                     output=True)
        self.played: list[str] = []

    def play_pcm(self, name: str, pcm: bytes) -> None:
        self._stream.write(pcm)
        self.played.append(name)

    def close(self) -> None:
        self._stream.close()
        self._pa.terminate()
