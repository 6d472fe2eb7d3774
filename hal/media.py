"""Media types shared by the camera and microphone backends and capture/."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Sound moves in blocks of this many milliseconds, microphone and speaker
# alike (PortAudio's frames per callback; four of the voice detector's 30 ms
# frames). Each block wakes a thread: at 30 ms the microphone's and the
# speaker's threads were a fifth of the recorder's CPU (issue 28). unit.toml
# `block_ms` overrides it.
SOUND_BLOCK_MS = 120


@dataclass(frozen=True)
class EncodedFrame:
    """One H.264 access unit (Annex-B), as picamera2's encoder hands it over."""

    data: bytes
    pts_us: int  # presentation time, microseconds on the unit's monotonic media clock
    keyframe: bool


@dataclass(frozen=True)
class PcmChunk:
    """Signed 16-bit little-endian mono PCM."""

    data: bytes
    pts_us: int
    rate: int

    @property
    def samples(self) -> int:
        return len(self.data) // 2


class DeviceFault(Exception):
    """A device stopped delivering; the message says which and why."""


class GuardedHook:
    """A picture hook run on a camera's thread: one that raises is dropped
    and reported once, so a broken overlay never stops the picture."""

    def __init__(
        self, hook: Callable[[Any, str, int], None], on_error: Callable[[str], None]
    ) -> None:
        self.hook: Callable[[Any, str, int], None] | None = hook
        self.on_error = on_error

    def __call__(self, pixels: Any, fmt: str, mono_us: int) -> None:
        if self.hook is None:
            return
        try:
            self.hook(pixels, fmt, mono_us)
        except Exception as exc:
            self.hook = None
            self.on_error(f"overlay dropped: {exc}")
