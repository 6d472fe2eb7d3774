"""Media types shared by the camera and microphone backends and capture/."""

from __future__ import annotations

from dataclasses import dataclass


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
