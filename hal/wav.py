"""WAV files of speech: 16 kHz mono 16-bit PCM read from any audio file
(PyAV's resampler), and speech rendered with espeak-ng. The unit reads its
shipped prompts with `load_wav`; only the build, flashing and simulation
machines run espeak-ng (`speech_wav`)."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import av
import numpy as np

from .media import DeviceFault

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


def read_pcm16(path: Path, rate: int = RATE) -> bytes | None:
    """The PCM of a WAV that is already mono 16-bit at `rate`, read with the
    standard library (no decoder: a unit reads its prompts this way at each
    start, in milliseconds); None when the file is any other format."""
    try:
        with wave.open(str(path), "rb") as w:
            if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, rate):
                return None
            return w.readframes(w.getnframes())
    except (wave.Error, EOFError):
        return None


def write_pcm16(path: Path, pcm: bytes, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


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
