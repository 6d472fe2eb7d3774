"""Simulated camera: a moving test pattern encoded with libx264 (PyAV).

Each picture carries its frame number as a row of 32 black/white blocks
(big enough to survive compression), so tests can decode a segment and read
back exactly which frames it holds. Frames are produced on demand by the
caller's clock (`frame_at`), so simulations run faster than real time.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from .media import DeviceFault, EncodedFrame

BITS = 32


def draw(n: int, width: int, height: int) -> np.ndarray:
    img = np.full((height, width, 3), 40, np.uint8)
    x = (n * 8) % width
    img[height // 2:, max(0, x - 40):x, 1] = 220  # a bar that moves: motion for the encoder
    block = width // BITS
    for bit in range(BITS):
        if (n >> bit) & 1:
            img[: block, bit * block:(bit + 1) * block] = 255
    return img


def read_number(img: np.ndarray) -> int:
    """Read back the frame number drawn by `draw` from a decoded RGB picture."""
    width = img.shape[1]
    block = width // BITS
    n = 0
    for bit in range(BITS):
        x0, x1 = bit * block + block // 4, (bit + 1) * block - block // 4
        cell = img[block // 4: 3 * block // 4, x0:x1]
        if cell.mean() > 150:
            n |= 1 << bit
    return n


class SimCamera:
    """Camera backend for simulation (no Pi): same frames out as the real one."""

    def __init__(self, width: int = 1280, height: int = 720, fps: int = 30, gop: int = 30,
                 bitrate: int = 2_000_000) -> None:
        self.width, self.height, self.fps = width, height, fps
        self._cc = av.CodecContext.create("libx264", "w")
        self._cc.width, self._cc.height = width, height
        self._cc.pix_fmt = "yuv420p"
        self._cc.time_base = Fraction(1, fps)
        self._cc.framerate = fps
        self._cc.bit_rate = bitrate
        self._cc.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(gop),
                            "keyint_min": str(gop), "sc_threshold": "0"}
        self._cc.open()
        self.frames_made = 0
        self.failed: str | None = None
        self._force_key = False

    def frame_interval_us(self) -> int:
        return 1_000_000 // self.fps

    def next_frame(self, pts_us: int) -> EncodedFrame:
        """Encode the next picture; zerolatency gives one packet per picture."""
        if self.failed:
            raise DeviceFault(f"camera: {self.failed}")
        n = self.frames_made
        vf = av.VideoFrame.from_ndarray(draw(n, self.width, self.height), format="rgb24")
        vf = vf.reformat(format="yuv420p")
        vf.pts = n
        if self._force_key:
            vf.pict_type = av.video.frame.PictureType.I
            self._force_key = False
        packets = self._cc.encode(vf)
        self.frames_made += 1
        if len(packets) != 1:
            raise DeviceFault(f"camera: encoder gave {len(packets)} packets for frame {n}")
        p = packets[0]
        return EncodedFrame(bytes(p), pts_us, bool(p.is_keyframe))

    def force_keyframe(self) -> None:
        """The next frame is a keyframe (the real encoder's force-key-frame control)."""
        self._force_key = True

    def still(self) -> bytes:
        """A JPEG of the current picture (what the real camera's still port gives)."""
        cc = av.CodecContext.create("mjpeg", "w")
        cc.width, cc.height, cc.pix_fmt = self.width, self.height, "yuvj420p"
        cc.time_base = Fraction(1, self.fps)
        cc.open()
        vf = av.VideoFrame.from_ndarray(draw(self.frames_made, self.width, self.height),
                                        format="rgb24").reformat(format="yuvj420p")
        return b"".join(bytes(p) for p in cc.encode(vf) + cc.encode(None))

    def fail(self, reason: str) -> None:
        """Fault injection: the camera stops delivering."""
        self.failed = reason
