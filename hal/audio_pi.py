"""Microphone and speaker ports on pyaudio (PortAudio). Imported lazily: the
pyaudio wheel is Pi-only here (it needs portaudio19-dev to build).

Microphone: PortAudio's callback mode, so blocks arrive from PortAudio's own
thread with status flags. Each block is placed on the unit's monotonic
clock by counting samples from an anchor (the first block's arrival minus
its length). An input overflow (paInputOverflow), or arrival running more
than two blocks ahead of the count, means samples were lost: the loss is
reported as an `AudioGap` and the count moves on by it, so later audio keeps
its true place instead of sliding early. The device is chosen by name (ALSA
card order changes between boots); an explicit index that does not exist
segfaults the real library, so indices only ever come from its own list.

Speaker: `write` blocks for the sound's length, so a worker thread plays a
queue; `play` returns at once, and a failed device raises on the next play.

Only the test double (tests/doubles/pyaudio_double.py) has run here.
"""

from __future__ import annotations

import importlib
import queue
import threading
from typing import Any

from .media import DeviceFault, PcmChunk
from .pacing import Clock
from .ports import AudioGap, OnChunk, OnError, OnGap

RATE = 16_000
FRAMES = 480  # 30 ms: the VAD's frame
PA_INPUT_OVERFLOW = 0x2  # paInputOverflow in the callback's status flags
PA_CONTINUE = 0


def find_device(pa: Any, name: str | None, *, input: bool) -> int | None:
    """The index of the first device whose name contains `name` (None: default)."""
    if name is None:
        return None
    key = "maxInputChannels" if input else "maxOutputChannels"
    seen = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        seen.append(str(info.get("name")))
        if name in str(info.get("name", "")) and int(info.get(key, 0)) > 0:
            return i
    raise DeviceFault(
        f"no {'input' if input else 'output'} device named {name!r} "
        f"(have: {', '.join(seen) or 'none'})"
    )


class PyAudioMicrophone:
    name = "pyaudio"

    def __init__(
        self, clock: Clock, device: str | None = None, rate: int = RATE, module: Any = None
    ) -> None:
        self._mod = module or importlib.import_module("pyaudio")
        self._pa = self._mod.PyAudio()
        if self._pa.get_device_count() == 0:
            self._pa.terminate()
            raise DeviceFault("microphone: no audio devices")
        try:
            self._index = find_device(self._pa, device, input=True)
        except DeviceFault as exc:
            self._pa.terminate()
            raise DeviceFault(f"microphone: {exc}") from None
        self.clock, self.rate = clock, rate
        self._stream: Any = None
        self._anchor_us: int | None = None
        self.samples = 0
        self.gaps = 0

    def start(self, on_chunk: OnChunk, on_gap: OnGap, on_error: OnError) -> None:
        block_us = FRAMES * 1_000_000 // self.rate

        def callback(
            in_data: bytes | None, frame_count: int, time_info: Any, status: int
        ) -> tuple[None, int]:
            try:
                now = self.clock.monotonic_ns() // 1000
                arrived = now - frame_count * 1_000_000 // self.rate  # its first sample
                if self._anchor_us is None:
                    self._anchor_us = arrived
                at = self._anchor_us + self.samples * 1_000_000 // self.rate
                lost = (arrived - at) * self.rate // 1_000_000
                if (status & PA_INPUT_OVERFLOW and lost > 0) or arrived - at > 2 * block_us:
                    self.gaps += 1
                    on_gap(AudioGap(at, lost))
                    self.samples += lost
                    at = self._anchor_us + self.samples * 1_000_000 // self.rate
                on_chunk(PcmChunk(bytes(in_data or b""), at, self.rate))
                self.samples += frame_count
            except Exception as exc:
                on_error(f"microphone: {exc!r}")
            return None, PA_CONTINUE

        try:
            self._stream = self._pa.open(
                format=self._mod.paInt16,
                channels=1,
                rate=self.rate,
                input=True,
                frames_per_buffer=FRAMES,
                input_device_index=self._index,
                stream_callback=callback,
            )
        except OSError as exc:
            raise DeviceFault(f"microphone: {exc}") from None

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop_stream()
            self._stream.close()
            self._stream = None
        self._pa.terminate()


class PyAudioSpeaker:
    name = "pyaudio"

    def __init__(self, device: str | None = None, rate: int = RATE, module: Any = None) -> None:
        mod = module or importlib.import_module("pyaudio")
        self._pa = mod.PyAudio()
        index = find_device(self._pa, device, input=False)
        try:
            self._stream = self._pa.open(
                format=mod.paInt16, channels=1, rate=rate, output=True, output_device_index=index
            )
        except OSError as exc:
            self._pa.terminate()
            raise DeviceFault(f"speaker: {exc}") from None
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._playing = threading.Event()
        self.failed: str | None = None
        self.played: list[str] = []
        self._thread = threading.Thread(target=self._run, name="speaker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            self._playing.set()
            try:
                self._stream.write(item[1])
                self.played.append(item[0])
            except OSError as exc:
                self.failed = str(exc)
                return
            finally:
                self._playing.clear()

    def play(self, name: str, pcm: bytes) -> None:
        if self.failed:
            raise DeviceFault(f"speaker: {self.failed}")
        self._queue.put((name, pcm))

    def busy(self) -> bool:
        return self._playing.is_set() or not self._queue.empty()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._stream.close()
        self._pa.terminate()
