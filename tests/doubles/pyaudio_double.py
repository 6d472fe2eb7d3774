"""A test double of the pyaudio API used by hal/audio_pi.py, behaving as
PortAudio does where it matters:

* callback mode: `open(..., stream_callback=cb)` starts a thread of its own
  that calls `cb(in_data, frame_count, time_info, status_flags)` once per
  buffer, in real time;
* an input overrun (`overflow(blocks)`): those blocks are never delivered,
  and the next callback carries paInputOverflow;
* output in callback mode: the callback is asked for each buffer with
  PortAudio's `time_info` (`current_time` and `output_buffer_dac_time` on
  the stream's own clock, which is not the caller's: here 1000 s ahead);
  the device can fail (`output_failed`): the stream then stops asking and
  is no longer active, and will not start again. `write` (blocking mode)
  blocks for the sound's length;
* starting and stopping as pyaudio over PortAudio: `open(start=False)`
  leaves the stream stopped; a callback that returns paComplete ends the
  stream at once, inactive but not stopped; pyaudio's
  `stop_stream` stops it only if pyaudio started it (its `_is_running`),
  and `start_stream` of a stream PortAudio has not stopped fails with
  paStreamIsNotStopped, as Pa_StartStream does;
* `sink` is what left the speaker: a block reaches it at its DAC time, and
  what is still in the buffer when the stream ends (paComplete or a stop)
  is dropped, as PortAudio's ALSA host does (pa_linux_alsa.c `AlsaStop`
  always takes snd_pcm_drop: "drain tends to lock up"; found on the
  emulated unit, where a prompt after a completed run lost its tail);
* devices are listed with names (`get_device_info_by_index`); an index that
  does not exist is where the real library segfaults, so the double refuses
  it loudly;
* PortAudio's initialisation is counted for the whole process: each
  `PyAudio()` adds one, each `terminate()` takes one away, and once none is
  left every stream call fails with `[Errno -10000] PortAudio not
  initialized` (a second `terminate()` of one instance ends every other
  instance's streams: what the emulated unit's self-test hit).
Input PCM comes from `source(n)` (silence unless set)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

paInt16 = 8  # pyaudio's values
paInputOverflow = 0x2
paContinue = 0
paComplete = 1
STREAM_CLOCK_AHEAD_S = 1000.0  # PortAudio's stream time is a clock of its own
OUTPUT_LATENCY_S = 0.045  # what is in the output buffer ahead of the speaker


class Stream:
    def __init__(
        self, pa: PyAudio, rate: int, frames: int, callback: Any, output: bool, start: bool
    ) -> None:
        self.pa, self.rate, self.frames, self.callback = pa, rate, frames, callback
        self.output = output
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.closed = False  # the device failed, or close()
        self.completed = False  # the callback returned paComplete: the run ended
        self.stopped = True  # PortAudio's own state (Pa_IsStreamStopped)
        self.starts = 0  # Pa_StartStream calls
        self._is_running = start  # pyaudio's flag, which its start/stop_stream go by
        if start:
            self._pa_start()

    def _pa_start(self) -> None:
        if not self.stopped:
            raise OSError(-9982, "Stream is not stopped")
        if self.output and self.pa.output_failed:
            raise OSError(-9999, "Unanticipated host error")
        self.stopped, self.completed = False, False
        self._stop.clear()
        self.starts += 1
        if self.callback is not None:
            self._thread = threading.Thread(target=self._run, name="portaudio", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        period = self.frames / self.rate
        due = time.monotonic()
        flags = 0
        n = 0
        buffered: deque[tuple[float, bytes]] = deque()  # (DAC time, block) not yet heard
        while not self._stop.is_set():
            if self.output:  # PortAudio fills the output buffer at once, then each period
                while buffered and buffered[0][0] <= time.monotonic():
                    self.pa.sink += buffered.popleft()[1]
                if self.pa.output_failed:
                    self.closed = True  # PortAudio stops the stream on a device error
                    return
                now = time.monotonic() + STREAM_CLOCK_AHEAD_S
                info = {"current_time": now, "output_buffer_dac_time": now + OUTPUT_LATENCY_S}
                data, flag = self.callback(None, self.frames, info, 0)
                dac = info["output_buffer_dac_time"] - STREAM_CLOCK_AHEAD_S
                buffered.append((dac, data))
                self.pa.dac_times.append(dac)
                if flag == paComplete:
                    self.completed = True  # what is buffered is dropped, not played
                    return
                due += period
                time.sleep(max(0.0, due - time.monotonic()))
                continue
            due += period
            time.sleep(max(0.0, due - time.monotonic()))
            if self.pa.lose_blocks > 0:
                self.pa.lose_blocks -= 1
                flags = paInputOverflow
                n += self.frames
                continue
            data = self.pa.source(n, self.frames)
            n += self.frames
            self.callback(data, self.frames, {"input_buffer_adc_time": 0.0}, flags)
            flags = 0

    def write(
        self, frames: bytes, num_frames: int | None = None, exception_on_underflow: bool = False
    ) -> None:
        if self.pa.output_failed:
            raise OSError(-9999, "Unanticipated host error")
        time.sleep(len(frames) / 2 / self.rate)
        self.pa.sink += frames

    def is_active(self) -> bool:
        return not (self.stopped or self.completed or self.closed)

    def is_stopped(self) -> bool:
        return self.stopped

    def get_output_latency(self) -> float:
        return OUTPUT_LATENCY_S

    def start_stream(self) -> None:
        _initialised()
        if self._is_running:
            return
        self._pa_start()
        self._is_running = True

    def stop_stream(self) -> None:
        _initialised()
        if not self._is_running:
            return
        self._stop.set()  # Pa_StopStream: the thread ends, what is buffered is dropped
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.stopped, self._is_running = True, False

    def close(self) -> None:
        _initialised()
        self._stop.set()
        self.closed = True


# PortAudio's Pa_Initialize/Pa_Terminate count, for the whole process
_INITS = [0]


def _initialised() -> None:
    if _INITS[0] <= 0:
        raise OSError(-10000, "PortAudio not initialized")


class PyAudio:
    devices: list[dict[str, Any]] = [
        {
            "name": "snd_rpi_i2s_card: simple-card_codec_link",
            "maxInputChannels": 2,
            "maxOutputChannels": 0,
        },
        {"name": "USB Audio Device: - (hw:2,0)", "maxInputChannels": 1, "maxOutputChannels": 2},
    ]
    source: Callable[[int, int], bytes] = staticmethod(lambda n, k: bytes(2 * k))
    sink = bytearray()
    dac_times: list[float] = []  # monotonic s at which each output buffer left the speaker
    lose_blocks = 0
    output_failed = False

    def __init__(self) -> None:
        _INITS[0] += 1

    def get_device_count(self) -> int:
        return len(self.devices)

    def get_device_info_by_index(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self.devices):
            raise OSError(-9996, "Invalid device index")
        return {"index": i, **self.devices[i]}

    def open(
        self,
        rate: int,
        channels: int,
        format: int,
        input: bool = False,
        output: bool = False,
        input_device_index: int | None = None,
        output_device_index: int | None = None,
        frames_per_buffer: int = 1024,
        stream_callback: Any = None,
        start: bool = True,
        **kw: Any,
    ) -> Stream:
        for index in (input_device_index, output_device_index):
            if index is not None and not 0 <= index < len(self.devices):
                raise AssertionError("the real pyaudio segfaults here; the caller must check")
        if format != paInt16:
            raise ValueError("format")
        _initialised()
        return Stream(self, rate, frames_per_buffer, stream_callback, output, start)

    def overflow(self, blocks: int) -> None:
        self.lose_blocks = blocks

    def terminate(self) -> None:
        _INITS[0] -= 1
