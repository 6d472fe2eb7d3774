"""Microphone and speaker ports on pyaudio (PortAudio). Imported lazily: the
pyaudio wheel is Pi-only here (it needs portaudio19-dev to build).

Microphone: PortAudio's callback mode, so blocks arrive from PortAudio's own
thread with status flags. Each block is placed on the unit's monotonic
clock by counting samples from an anchor (the first block's arrival minus
its length). An input overflow (paInputOverflow), or arrival running more
than the host's buffer (`UNFLAGGED_LOSS_US`) ahead of the count, means
samples were lost: the loss is reported as an `AudioGap` and the count moves
on by it, so later audio keeps its true place instead of sliding early. A
callback that is merely late (a busy machine) is not a loss: the samples
wait in ALSA's buffer and come in the next callbacks, back to back. The
device is chosen by name (ALSA card order changes between boots); an
explicit index that does not exist segfaults the real library, so indices
only ever come from its own list.

Speaker: PortAudio's callback mode too: PortAudio asks for each block from
its own thread, and the block's DAC time (`output_buffer_dac_time`, on
PortAudio's stream clock, less `current_time` on the same clock, added to
the unit's monotonic now) is when it leaves the speaker: each block of a
prompt is reported with that instant and its samples, the reference the
spoken-note judgement takes the unit's own voice out with. Where the host
gives no DAC time, the stream's output latency stands in. `play` queues and
returns at once. The stream runs only while there is sound to play: `play`
starts it, and it ends (paComplete) at the first callback after the last
sound has left the speaker, by the DAC times PortAudio gives, with a block
to spare. Not sooner: PortAudio's ALSA host drops what is still in the
buffer when a stream ends (pa_linux_alsa.c `AlsaStop` always takes
snd_pcm_drop), so ending at the last block cut each prompt's tail (seen on
the emulated unit). A stream left running asked for a block of silence 8
times a second all shift, each a wake-up of PortAudio's thread and the
GIL, on battery. A stream that stopped on its own (the device failed), or
a device that will not start, raises on the play.

Only the test double (tests/doubles/pyaudio_double.py) has run here.
"""

from __future__ import annotations

import importlib
import threading
from collections import deque
from typing import Any

from .media import SOUND_BLOCK_MS, DeviceFault, PcmChunk
from .pacing import Clock
from .ports import AudioGap, OnChunk, OnError, OnGap, OnPlayed, Played

RATE = 16_000
FRAMES = RATE * SOUND_BLOCK_MS // 1000
PA_INPUT_OVERFLOW = 0x2  # paInputOverflow in the callback's status flags
PA_CONTINUE = 0
PA_COMPLETE = 1  # the callback's last: PortAudio ends the stream, dropping what it holds
# Lateness no buffer covers, flagged or not: samples were lost. Anything less
# is a late callback whose samples are still in ALSA's buffer (it used to be
# two blocks, which took every scheduling delay of 60 ms for a loss).
UNFLAGGED_LOSS_US = 500_000


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


def _stop(stream: Any, pa: Any) -> tuple[None, None]:
    """A device's stream stopped and its PortAudio terminated, once: PortAudio
    counts initialisations for the whole process, so a second terminate()
    would end the other device's stream too. Returns what the device keeps."""
    if stream is not None:
        stream.stop_stream()
        stream.close()
    if pa is not None:
        pa.terminate()
    return None, None


class PyAudioMicrophone:
    """`block`: frames per PortAudio callback (SOUND_BLOCK_MS, 120 ms, by
    default). A larger block means fewer callbacks: less CPU, and fewer
    overflows on a machine short of it; the voice detector takes 30 ms
    frames from any."""

    name = "pyaudio"

    def __init__(
        self,
        clock: Clock,
        device: str | None = None,
        rate: int = RATE,
        module: Any = None,
        block: int = FRAMES,
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
        self.clock, self.rate, self.block = clock, rate, block
        self._stream: Any = None
        self._anchor_us: int | None = None
        self.samples = 0
        self.gaps = 0

    def start(self, on_chunk: OnChunk, on_gap: OnGap, on_error: OnError) -> None:

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
                if (status & PA_INPUT_OVERFLOW and lost > 0) or arrived - at > UNFLAGGED_LOSS_US:
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
                frames_per_buffer=self.block,
                input_device_index=self._index,
                stream_callback=callback,
            )
        except OSError as exc:
            raise DeviceFault(f"microphone: {exc}") from None

    def stop(self) -> None:
        self._stream, self._pa = _stop(self._stream, self._pa)


class PyAudioSpeaker:
    """`block`: frames per PortAudio callback (SOUND_BLOCK_MS by default; see the microphone)."""

    name = "pyaudio"

    def __init__(
        self,
        clock: Clock,
        device: str | None = None,
        rate: int = RATE,
        module: Any = None,
        block: int = FRAMES,
    ) -> None:
        mod = module or importlib.import_module("pyaudio")
        self._pa = mod.PyAudio()
        try:
            index = find_device(self._pa, device, input=False)
        except DeviceFault:
            self._pa.terminate()  # its PortAudio initialisation is the process's
            raise
        self.clock, self.rate = clock, rate
        self._queue: deque[tuple[str, bytearray]] = deque()  # (prompt, what is left of it)
        self._lock = threading.Lock()  # play() on the loop, blocks taken on PortAudio's thread
        self._on_played: OnPlayed | None = None
        self.failed: str | None = None
        self.played: list[str] = []  # prompts played to their end
        self._running = False  # started by play(), ended by a callback after the sound is out
        self._heard_by_us = 0  # when the last sound given leaves the speaker, with a block spare
        self._block_us = block * 1_000_000 // rate
        try:
            self._stream = self._pa.open(
                format=mod.paInt16,
                channels=1,
                rate=rate,
                output=True,
                output_device_index=index,
                frames_per_buffer=block,
                stream_callback=self._callback,
                start=False,
            )
        except OSError as exc:
            self._pa.terminate()
            raise DeviceFault(f"speaker: {exc}") from None
        self._latency_us = int(float(self._stream.get_output_latency()) * 1e6)

    def start(self, on_played: OnPlayed) -> None:
        self._on_played = on_played

    def _callback(
        self, in_data: bytes | None, frame_count: int, time_info: Any, status: int
    ) -> tuple[bytes, int]:
        want = 2 * frame_count
        out = bytearray()
        flag, at = PA_CONTINUE, 0
        try:
            with self._lock:
                while self._queue and len(out) < want:
                    name, rest = self._queue[0]
                    take = rest[: want - len(out)]
                    out += take
                    del rest[: len(take)]
                    if not rest:
                        self._queue.popleft()
                        self.played.append(name)
                if out:
                    at = self._dac_us(time_info)
                    self._heard_by_us = at + 2 * self._block_us
                elif not self._queue and self.clock.monotonic_ns() // 1000 >= self._heard_by_us:
                    # nothing left in PortAudio's buffer but silence, which its
                    # end drops; under the lock: a play() now starts it again
                    self._running, flag = False, PA_COMPLETE
            if out and self._on_played is not None:
                self._on_played(Played(at, bytes(out)))
        except Exception as exc:
            self.failed = f"speaker: {exc!r}"
        return bytes(out) + bytes(want - len(out)), flag

    def _dac_us(self, time_info: Any) -> int:
        """When this block's first sample leaves the speaker, on the unit's clock."""
        now = self.clock.monotonic_ns() // 1000
        info = time_info if isinstance(time_info, dict) else {}
        ahead = float(info.get("output_buffer_dac_time", 0.0)) - float(
            info.get("current_time", 0.0)
        )
        if info.get("output_buffer_dac_time") and info.get("current_time") and 0 <= ahead < 1:
            return now + int(ahead * 1e6)
        return now + self._latency_us  # the host gives no DAC time

    def play(self, name: str, pcm: bytes) -> None:
        with self._lock:
            if self.failed is None and (
                self._stream is None or (self._running and not self._stream.is_active())
            ):
                self.failed = "the output stream stopped"
            if self.failed:
                raise DeviceFault(f"speaker: {self.failed}")
            self._queue.append((name, bytearray(pcm)))
            start, self._running = not self._running, True
        if start:
            self._start()

    def _start(self) -> None:
        """Start the stream for what play() queued. pyaudio's stop_stream
        ends a run the callback completed (Pa_StopStream joins its ended
        thread); PortAudio starts only a stopped stream."""
        assert self._stream is not None  # play() refused a closed one
        try:
            self._stream.stop_stream()
            self._stream.start_stream()
        except OSError as exc:
            with self._lock:
                self.failed, self._running = f"{exc}", False
                self._queue.clear()
            raise DeviceFault(f"speaker: {self.failed}") from None

    def busy(self) -> bool:
        with self._lock:
            return bool(self._queue)

    def hush(self) -> None:
        with self._lock:  # what PortAudio holds plays out (its output latency)
            self._queue.clear()

    def stop(self) -> None:
        self._stream, self._pa = _stop(self._stream, self._pa)
