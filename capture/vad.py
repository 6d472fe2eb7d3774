"""Voice activity: how many seconds of speech the microphone heard in a window.

The WebRTC VAD alone calls loud broadband noise and steady tones speech
(platform-facts.md), so a frame counts only when three things agree:
  * the VAD (one instance per stream, mode 3) says speech;
  * the spectrum is not flat (white noise has spectral flatness near 0.5+,
    voiced speech well below);
  * the level is modulated like syllables: over the last second the frame
    energies vary (coefficient of variation), which a steady tone or hum does not.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import webrtcvad

RATE = 16_000
FRAME = 480  # 30 ms at 16 kHz
FRAME_US = 30_000
MAX_FLATNESS = 0.35
MIN_MODULATION = 0.3
MIN_DBFS = -50.0


@dataclass
class SpeechMeter:
    mode: int = 3
    _vad: webrtcvad.Vad = field(init=False, repr=False)
    _buf: bytearray = field(default_factory=bytearray, repr=False)
    _next_us: int | None = None
    _energies: deque = field(default_factory=lambda: deque(maxlen=34), repr=False)
    speech: list[int] = field(default_factory=list)  # start times of speech frames

    def __post_init__(self) -> None:
        self._vad = webrtcvad.Vad(self.mode)

    def feed(self, pcm: bytes, pts_us: int) -> None:
        if self._next_us is None or not self._buf:
            self._next_us = pts_us - len(self._buf) // 2 * 1_000_000 // RATE
        self._buf += pcm
        while len(self._buf) >= FRAME * 2:
            frame = bytes(self._buf[: FRAME * 2])
            del self._buf[: FRAME * 2]
            if self._is_speech(frame):
                self.speech.append(self._next_us)
            self._next_us += FRAME_US

    def _is_speech(self, frame: bytes) -> bool:
        x = np.frombuffer(frame, "<i2").astype(np.float64)
        rms = float(np.sqrt(np.mean(x * x))) + 1e-9
        self._energies.append(rms)
        if 20 * np.log10(rms / 32768) < MIN_DBFS:
            return False
        if not self._vad.is_speech(frame, RATE):
            return False
        power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2 + 1e-12
        flatness = float(np.exp(np.mean(np.log(power))) / np.mean(power))
        if flatness > MAX_FLATNESS:
            return False
        # modulation among the audible frames only, so the step from silence
        # to a steady tone does not look like a syllable
        floor = 32768 * 10 ** (MIN_DBFS / 20)
        e = np.array([v for v in self._energies if v >= floor])
        return len(e) >= 10 and float(e.std() / e.mean()) >= MIN_MODULATION

    def seconds(self, from_us: int, to_us: int) -> float:
        """Seconds of speech heard in [from_us, to_us)."""
        return sum(1 for t in self.speech if from_us <= t < to_us) * FRAME_US / 1e6

    def forget_before(self, t_us: int) -> None:
        self.speech = [t for t in self.speech if t >= t_us]
