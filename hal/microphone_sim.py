"""Simulated microphone and speaker: a schedule of sounds (speech WAVs,
silence, noise, tones) played into the unit, delivered as 16 kHz 16-bit mono
PCM on demand; a speaker that plays its queue in real (or virtual) time and
reports each block it played; and the echo path by which the microphone
hears that speaker, as it does on a unit where they sit side by side.

Speech comes from real recordings or from espeak-ng (`speech_wav`), never
from synthetic stand-ins, because the voice-activity check must hear speech.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .media import SOUND_BLOCK_MS, DeviceFault, PcmChunk
from .pacing import Clock, Pacer, Task
from .ports import AudioGap, OnChunk, OnError, OnGap, OnPlayed, Played
from .wav import RATE, load_wav


@dataclass(frozen=True)
class Sound:
    """One scheduled sound: `at_s` from the start, and what it is:
    a WAV path, "silence", "noise:<dBFS>" or "tone:<Hz>:<dBFS>"."""

    at_s: float
    source: str
    seconds: float | None = None  # for generated sounds


def _level(dbfs: float) -> float:
    return 32767 * 10 ** (dbfs / 20)


class EchoPath:
    """What the microphone hears of the unit's own speaker: every block it
    played, through a short room response (the direct path 1 ms away, then
    reflections 20 dB down dying away over about 0.1 s), at `gain_db` to
    what was played, and a small speaker's soft clipping. Sample 0 is at
    `origin_us`, like the microphone's."""

    def __init__(self, origin_us: int, gain_db: float, seed: int = 7) -> None:
        self.origin_us = origin_us
        rng = np.random.default_rng(seed)
        n = RATE // 10
        h = rng.normal(size=n) * np.exp(-np.arange(n) / (0.03 * RATE)) * 10 ** (-20 / 20)
        h[: RATE // 400] = 0  # the first reflection comes after 2.5 ms
        h[RATE // 1000] = 1.0  # the direct path: 2 cm is 0.06 ms; the codec's delay, 1 ms
        self._h = h * 10 ** (gain_db / 20)
        self._blocks: deque[tuple[int, np.ndarray]] = deque()
        self._lock = threading.Lock()  # the speaker's thread adds, the microphone's reads

    def heard(self, p: Played) -> None:
        at = (p.at_us - self.origin_us) * RATE // 1_000_000
        with self._lock:
            self._blocks.append((at, np.frombuffer(p.pcm, "<i2").astype(np.float64)))

    def read(self, start: int, count: int) -> np.ndarray:
        """The echo in samples [start, start + count)."""
        lo = start - len(self._h) + 1
        x = np.zeros(count + len(self._h) - 1)
        with self._lock:
            while self._blocks and self._blocks[0][0] + len(self._blocks[0][1]) < lo - RATE:
                self._blocks.popleft()  # a second behind what is asked: heard already
            blocks = list(self._blocks)
        for at, block in blocks:
            a, b = max(at, lo), min(at + len(block), start + count)
            if a < b:
                x[a - lo : b - lo] = block[a - at : b - at]
        y = np.convolve(x, self._h, "valid")
        full = 32767 * 0.7
        return np.tanh(y / full) * full


class SimMicrophone:
    def __init__(self, schedule: Sequence[Sound] = (), seed: int = 1) -> None:
        self._rng = np.random.default_rng(seed)
        self._clips: list[tuple[int, np.ndarray]] = []
        for s in schedule:
            start = int(s.at_s * RATE)
            self._clips.append((start, self._render(s)))
        self.failed: str | None = None
        self.echo: EchoPath | None = None  # the unit's own speaker, when it is heard

    def _render(self, s: Sound) -> np.ndarray:
        n = int((s.seconds or 1.0) * RATE)
        kind, _, arg = s.source.partition(":")
        if kind == "silence":
            return np.zeros(n, np.int16)
        if kind == "noise":
            return np.clip(self._rng.normal(0, _level(float(arg)), n), -32768, 32767).astype(
                np.int16
            )
        if kind == "tone":
            hz, _, db = arg.partition(":")
            t = np.arange(n) / RATE
            return (np.sin(2 * np.pi * float(hz) * t) * _level(float(db))).astype(np.int16)
        path = Path(s.source)
        if not path.exists():
            raise DeviceFault(f"microphone schedule: no such sound file {path}")
        return load_wav(path)

    def read(self, start_sample: int, count: int) -> PcmChunk:
        """The PCM the microphone hears for samples [start, start+count)."""
        if self.failed:
            raise DeviceFault(f"microphone: {self.failed}")
        out = np.zeros(count, np.int32)
        for at, clip in self._clips:
            lo, hi = max(at, start_sample), min(at + len(clip), start_sample + count)
            if lo < hi:
                out[lo - start_sample : hi - start_sample] += clip[lo - at : hi - at]
        if self.echo is not None:
            out += np.round(self.echo.read(start_sample, count)).astype(np.int32)
        pcm = np.clip(out, -32768, 32767).astype("<i2").tobytes()
        return PcmChunk(pcm, start_sample * 1_000_000 // RATE, RATE)

    def fail(self, reason: str) -> None:
        self.failed = reason


CHUNK = RATE * SOUND_BLOCK_MS // 1000  # what PortAudio hands over per callback
# Blocks a sound card's ring holds for a reader that stopped; older ones are
# overwritten and reported lost (an overrun), as PortAudio reports them.
BACKLOG_BLOCKS = 4  # about half a second


class PacedMicrophone:
    """The Microphone port for simulation: `source` says what is heard, one
    block per period, delivered when its last sample has arrived (as a
    sound card does), stamped with its first sample's instant on the unit's
    monotonic clock. `origin_us` is where sample 0 of the source lies, so a
    scenario's sounds fall where it put them. Sample-exact: 16 kHz x 120 ms is
    1,920 samples with no remainder.

    `overflow(blocks)` loses that many blocks the way an input overrun does:
    they are not delivered and a gap is reported instead. So do the blocks
    beyond `backlog` when its thread could not run (the process stopped)."""

    def __init__(
        self,
        source: SimMicrophone,
        pacer: Pacer,
        origin_us: int,
        name: str = "sim",
        backlog: int | None = BACKLOG_BLOCKS,
    ) -> None:
        self.source, self.pacer, self.origin_us, self.name = source, pacer, origin_us, name
        self.backlog = backlog
        self.rate = RATE
        self._task: Task | None = None
        self._lose = 0
        self._hushed = False

    def start(self, on_chunk: OnChunk, on_gap: OnGap, on_error: OnError) -> None:
        now = self.pacer.clock.monotonic_ns() // 1000
        first = -(-(now - self.origin_us) * RATE // 1_000_000)  # the first whole sample from now on
        period = Fraction(CHUNK * 1_000_000, RATE)
        state = {"next": 0}  # the block due next

        def tick(due_us: int) -> None:
            # the block whose last sample has just been heard (the pacer may have
            # skipped some: those were lost); the first is complete a block after start
            b = round((due_us - now) / period) - 1
            if b < 0:
                return
            if b > state["next"] and self._lose < 1 << 62:
                s_lost = first + state["next"] * CHUNK
                on_gap(
                    AudioGap(
                        self.origin_us + s_lost * 1_000_000 // RATE, (b - state["next"]) * CHUNK
                    )
                )
            state["next"] = b + 1
            s0 = first + b * CHUNK
            pts = self.origin_us + s0 * 1_000_000 // RATE
            if self._lose >= 1 << 62 or self._hushed:
                return  # dead, or silent without an error (nothing, not even a gap)
            if self._lose > 0:
                self._lose -= 1
                on_gap(AudioGap(pts, CHUNK))
                return
            try:
                chunk = self.source.read(s0, CHUNK)
            except DeviceFault as exc:
                self._lose = 1 << 62  # a dead device delivers nothing more
                on_error(str(exc))
                return
            on_chunk(PcmChunk(chunk.data, pts, RATE))

        self._task = self.pacer.every(period, tick, "microphone", self.backlog)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def overflow(self, blocks: int) -> None:
        self._lose += blocks

    def hush(self, silent: bool) -> None:
        """Deliver nothing (no error, no gap) until hushed False: a slow start,
        a driver that stalls and wakes."""
        self._hushed = silent


class SimSpeaker:
    """The Speaker port for simulation: plays nothing aloud, but plays its
    queue in time: one block per period on the pacer (live or virtual).
    As a sound card's callback does, each period it takes the block for the
    next one (a period of output latency) and reports it with the instant it
    will leave the speaker, to the runtime and to `listeners` (an `EchoPath`
    into the simulated microphone). A period it could not serve (the process
    stopped) is not made up: the sound goes on later, as a real one's does
    after an underrun. Busy while sound waits. As PyAudioSpeaker's stream,
    it runs only while there is sound: `play` starts the periods, and the
    period that takes the last block ends them."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self.clock: Clock = pacer.clock
        self.name = "sim"
        self.played: list[tuple[int, str]] = []  # (when play was asked, prompt)
        self.samples_played = 0
        self.failed: str | None = None
        self.listeners: list[OnPlayed] = []
        self._on_played: OnPlayed | None = None
        self._queue = bytearray()
        self._lock = threading.Lock()  # play() on the loop, blocks out on the pacer's thread
        self._period = Fraction(CHUNK * 1_000_000, RATE)
        self._task: Task | None = None  # the periods, while sound waits
        self._stopped = False

    def start(self, on_played: OnPlayed) -> None:
        self._on_played = on_played

    def _tick(self, due_us: int) -> None:
        with self._lock:
            block = bytes(self._queue[: 2 * CHUNK])
            del self._queue[: 2 * CHUNK]
            if not self._queue and self._task is not None:  # under the lock: play() restarts
                self._task.cancel()
                self._task = None
        if not block:
            return
        self.samples_played += len(block) // 2
        p = Played(due_us + int(self._period), block)  # it plays in the next period
        for listener in (self._on_played, *self.listeners):
            if listener is not None:
                listener(p)

    def play(self, name: str, pcm: bytes) -> None:
        if self.failed:
            raise DeviceFault(f"speaker: {self.failed}")
        with self._lock:
            self._queue += pcm
            if self._task is None and not self._stopped:
                self._task = self.pacer.every(self._period, self._tick, "speaker", backlog=0)
        self.played.append((self.clock.monotonic_ns() // 1000, name))

    def busy(self) -> bool:
        with self._lock:
            return bool(self._queue)

    def hush(self) -> None:
        with self._lock:
            self._queue.clear()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            task, self._task = self._task, None
            self._queue.clear()
        if task is not None:
            task.cancel()  # outside the lock: it joins a tick that may wait on it

    def fail(self, reason: str) -> None:
        self.failed = reason
