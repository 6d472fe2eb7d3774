"""Simulated microphone: a schedule of sounds (speech WAVs, silence, noise,
tones) played into the unit, delivered as 16 kHz 16-bit mono PCM on demand.

Speech comes from real recordings or from espeak-ng (`speech_wav`), never
from synthetic stand-ins, because the voice-activity check must hear speech.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .media import DeviceFault, PcmChunk
from .pacing import Clock, Pacer, Task
from .ports import AudioGap, OnChunk, OnError, OnGap

RATE = 16_000


def load_wav(path: Path, rate: int = RATE) -> np.ndarray:
    """Any audio file -> int16 mono at `rate` (PyAV's resampler)."""
    out = []
    with av.open(str(path)) as f:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in f.decode(audio=0):
            for r in resampler.resample(frame):
                out.append(r.to_ndarray().reshape(-1))
        for r in resampler.resample(None):
            out.append(r.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.int16) if out else np.zeros(0, np.int16)


def speech_wav(text: str, path: Path, voice: str = "en") -> Path:
    """Speak `text` into a WAV with espeak-ng (Debian package espeak-ng)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DeviceFault("espeak-ng is not installed (scripts/setup installs it)")
    subprocess.run(
        # "--": a text that starts with "-" is words to say, not an option
        [exe, "-v", voice, "-s", "150", "-w", str(path), "--", text],
        check=True,
        capture_output=True,
    )
    # espeak-ng exits 0 even when it could not write the file
    if not path.is_file() or path.stat().st_size == 0:
        raise DeviceFault(f"espeak-ng wrote no speech to {path}")
    return path


@dataclass(frozen=True)
class Sound:
    """One scheduled sound: `at_s` from the start, and what it is:
    a WAV path, "silence", "noise:<dBFS>" or "tone:<Hz>:<dBFS>"."""

    at_s: float
    source: str
    seconds: float | None = None  # for generated sounds


def _level(dbfs: float) -> float:
    return 32767 * 10 ** (dbfs / 20)


class SimMicrophone:
    def __init__(self, schedule: Sequence[Sound] = (), seed: int = 1) -> None:
        self._rng = np.random.default_rng(seed)
        self._clips: list[tuple[int, np.ndarray]] = []
        for s in schedule:
            start = int(s.at_s * RATE)
            self._clips.append((start, self._render(s)))
        self.failed: str | None = None

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
        pcm = np.clip(out, -32768, 32767).astype("<i2").tobytes()
        return PcmChunk(pcm, start_sample * 1_000_000 // RATE, RATE)

    def fail(self, reason: str) -> None:
        self.failed = reason


CHUNK = 480  # 30 ms at 16 kHz: the VAD's frame, and what PortAudio hands over per callback


class PacedMicrophone:
    """The Microphone port for simulation: `source` says what is heard, one
    30 ms block per period, delivered when its last sample has arrived (as a
    sound card does), stamped with its first sample's instant on the unit's
    monotonic clock. `origin_us` is where sample 0 of the source lies, so a
    scenario's sounds fall where it put them. Sample-exact: 16 kHz x 30 ms is
    480 samples with no remainder.

    `overflow(blocks)` loses that many blocks the way an input overrun does:
    they are not delivered and a gap is reported instead."""

    def __init__(
        self, source: SimMicrophone, pacer: Pacer, origin_us: int, name: str = "sim"
    ) -> None:
        self.source, self.pacer, self.origin_us, self.name = source, pacer, origin_us, name
        self.rate = RATE
        self._task: Task | None = None
        self._lose = 0

    def start(self, on_chunk: OnChunk, on_gap: OnGap, on_error: OnError) -> None:
        first = -(
            -(self.pacer.clock.monotonic_ns() // 1000 - self.origin_us) * RATE // 1_000_000
        )  # the first whole sample from now on
        state = {"k": 0}

        def tick(due_us: int) -> None:
            s0 = first + state["k"] * CHUNK
            state["k"] += 1
            pts = self.origin_us + s0 * 1_000_000 // RATE
            if self._lose >= 1 << 62:
                return
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

        # the first block is complete one block after the first sample
        self._task = self.pacer.every(Fraction(CHUNK * 1_000_000, RATE), tick, "microphone")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def overflow(self, blocks: int) -> None:
        self._lose += blocks


class SimSpeaker:
    """The Speaker port for simulation: plays nothing aloud, records what it
    was given and when, and is busy for as long as the sound would last."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.name = "sim"
        self.played: list[tuple[int, str]] = []
        self.samples_played = 0
        self._busy_until_us = 0
        self.failed: str | None = None

    def play(self, name: str, pcm: bytes) -> None:
        if self.failed:
            raise DeviceFault(f"speaker: {self.failed}")
        now = self.clock.monotonic_ns() // 1000
        start = max(now, self._busy_until_us)
        self._busy_until_us = start + len(pcm) // 2 * 1_000_000 // RATE
        self.samples_played += len(pcm) // 2
        self.played.append((now, name))

    def busy(self) -> bool:
        return self.clock.monotonic_ns() // 1000 < self._busy_until_us

    def stop(self) -> None:
        self._busy_until_us = 0

    def fail(self, reason: str) -> None:
        self.failed = reason
