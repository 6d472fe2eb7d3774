"""Simulated camera: a moving test pattern encoded with libx264 (PyAV).

Each picture carries its frame number as a row of 32 black/white blocks
(big enough to survive compression), so tests can decode a segment and read
back exactly which frames it holds. `SimCamera` encodes a frame when asked;
`PacedCamera` is the Camera port that asks it once per frame period, live or
on a scenario's virtual clock.
"""

from __future__ import annotations

import threading
from fractions import Fraction
from typing import Protocol

import av
import numpy as np

from .media import DeviceFault, EncodedFrame, GuardedHook
from .pacing import Pacer, Task
from .ports import OnError, OnFrame, OnPicture

BITS = 32
# Frames a camera holds for a consumer that stopped (picamera2's buffers, and
# the sensor's): after a longer stop the older ones are gone, never made up.
# Half a second, so a simulated camera that runs short of CPU (it encodes in
# this process, a real one in hardware) loses nothing.
BACKLOG_FRAMES = 15


def draw(n: int, width: int, height: int) -> np.ndarray:
    img = np.full((height, width, 3), 40, np.uint8)
    x = (n * 8) % width
    img[height // 2 :, max(0, x - 40) : x, 1] = 220  # a bar that moves: motion for the encoder
    block = width // BITS
    for bit in range(BITS):
        if (n >> bit) & 1:
            img[:block, bit * block : (bit + 1) * block] = 255
    return img


def read_number(img: np.ndarray) -> int:
    """Read back the frame number drawn by `draw` from a decoded RGB picture."""
    width = img.shape[1]
    block = width // BITS
    n = 0
    for bit in range(BITS):
        x0, x1 = bit * block + block // 4, (bit + 1) * block - block // 4
        cell = img[block // 4 : 3 * block // 4, x0:x1]
        if cell.mean() > 150:
            n |= 1 << bit
    return n


class SimCamera:
    """Camera backend for simulation (no Pi): same frames out as the real one."""

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        fps: int = 30,
        gop: int = 30,
        bitrate: int = 2_000_000,
    ) -> None:
        self.width, self.height, self.fps = width, height, fps
        self._cc = av.CodecContext.create("libx264", "w")
        self._cc.width, self._cc.height = width, height
        self._cc.pix_fmt = "yuv420p"
        self._cc.time_base = Fraction(1, fps)
        self._cc.framerate = Fraction(fps)
        self._cc.bit_rate = bitrate
        self._cc.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
        }
        self._cc.open()
        self.frames_made = 0
        self.failed: str | None = None
        self._force_key = False
        self.picture_hook: OnPicture | None = None  # the watermark, burned before encoding

    def frame_interval_us(self) -> int:
        return 1_000_000 // self.fps

    def next_frame(self, pts_us: int) -> EncodedFrame:
        """Encode the next picture; zerolatency gives one packet per picture."""
        img = draw(self.frames_made, self.width, self.height)
        if self.picture_hook is not None:
            self.picture_hook(img, "RGB888", pts_us)
        return self.encode(img, pts_us)

    def encode(self, img: np.ndarray, pts_us: int) -> EncodedFrame:
        """Encode one RGB picture as the next frame."""
        if self.failed:
            raise DeviceFault(f"camera: {self.failed}")
        n = self.frames_made
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
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
        vf = av.VideoFrame.from_ndarray(
            draw(self.frames_made, self.width, self.height), format="rgb24"
        ).reformat(format="yuvj420p")
        return b"".join(bytes(p) for p in cc.encode(vf) + cc.encode(None))

    def fail(self, reason: str) -> None:
        """Fault injection: the camera stops delivering."""
        self.failed = reason


class FrameSource(Protocol):
    """What a paced camera encodes from: the test pattern or a replayed file."""

    def next_frame(self, pts_us: int) -> EncodedFrame: ...

    def force_keyframe(self) -> None: ...

    def still(self) -> bytes: ...

    picture_hook: OnPicture | None


class PacedCamera:
    """The Camera port for simulation: `source` encodes one frame per period,
    delivered from the pacer's thread (live) or on its step (virtual), with
    the due instant on the unit's monotonic clock as its timestamp.

    `stall(reason)` is the fault a loose ribbon cable gives a real camera:
    frames simply stop, nothing is raised (the firmware's frame watchdog must
    notice). An encoder error is reported through `on_error`, once. After
    its thread could not run (the process stopped), it delivers the last
    `backlog` frames it held, dated when they were due, and none of the
    ones before (None: all of them, back-dated: a back-filling backend)."""

    def __init__(
        self,
        source: FrameSource,
        pacer: Pacer,
        fps: int = 30,
        name: str = "sim",
        backlog: int | None = BACKLOG_FRAMES,
    ) -> None:
        self.source, self.pacer, self.fps, self.name = source, pacer, fps, name
        self.backlog = backlog
        self._task: Task | None = None
        self._lock = threading.Lock()
        self.stalled: str | None = None
        self.frames_delivered = 0

    def start(self, on_frame: OnFrame, on_error: OnError) -> None:
        def tick(due_us: int) -> None:
            if self.stalled:
                return
            try:
                with self._lock:
                    frame = self.source.next_frame(due_us)
            except DeviceFault as exc:
                self.stalled = str(exc)
                on_error(str(exc))
                return
            self.frames_delivered += 1
            on_frame(frame)

        self._task = self.pacer.every(Fraction(1_000_000, self.fps), tick, "camera", self.backlog)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def request_keyframe(self) -> None:
        with self._lock:
            self.source.force_keyframe()

    def still(self) -> bytes:
        with self._lock:
            return self.source.still()

    def overlay(self, hook: OnPicture | None, on_error: OnError) -> bool:
        if getattr(self.source, "replayed", False):
            return False
        with self._lock:
            self.source.picture_hook = GuardedHook(hook, on_error) if hook else None
        return True

    def stall(self, reason: str) -> None:
        self.stalled = reason

    def resume(self) -> None:
        """A stalled camera delivers again (what a real one may do by itself)."""
        self.stalled = None
