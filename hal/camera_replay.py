"""A replay camera: a pre-encoded H.264 file fed as if the camera produced it
(for benchmarks: the Pi path, where video is never re-encoded). The file is
looped; presentation times are re-stamped by the caller's clock."""

from __future__ import annotations

from pathlib import Path

import av

from .media import EncodedFrame
from .ports import OnPicture


class ReplayCamera:
    def __init__(self, path: Path) -> None:
        self._units: list[tuple[bytes, bool]] = []
        with av.open(str(path)) as f:
            stream = f.streams.video[0]
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            for packet in f.demux(stream):
                if packet.size:
                    self._units.append((bytes(packet), bool(packet.is_keyframe)))
        if not self._units or not self._units[0][1]:
            raise ValueError(f"{path}: no H.264 starting with a keyframe")
        # the clip held in memory: a bench subtracts it, a Pi has none
        self.clip_bytes = sum(len(data) for data, _ in self._units)
        self.frames_made = 0
        # Replayed frames are already encoded: no picture to burn a watermark
        # into (the bench's Pi-like path). PacedCamera.overlay says so.
        self.replayed = True
        self.picture_hook: OnPicture | None = None

    def next_frame(self, pts_us: int) -> EncodedFrame:
        data, key = self._units[self.frames_made % len(self._units)]
        self.frames_made += 1
        # a copy, as a camera hands over a new buffer each frame: the
        # pre-record ring then holds its own bytes, as on a unit, instead of
        # references to the looped clip (which made the ring look free)
        return EncodedFrame(bytes(memoryview(data)), pts_us, key)

    def force_keyframe(self) -> None:
        return None  # a recording cannot be re-encoded: the next keyframe comes in its time

    def still(self) -> bytes:
        return b""
