"""The Pi camera through picamera2: its H.264 encoder (hardware on a Pi 4,
libav on a Pi 5) feeds our Output, which hands access units to capture.

picamera2 imports only on a Pi (it needs libcamera), so everything here is
imported inside `PiCamera.__init__`. This module has only run against the
test double in tests/doubles/picamera2_double.py, never on a Pi.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable
from typing import Any

from .media import EncodedFrame


def output_class(base: type) -> type:
    """Our Output subclass (the encoder rejects anything that is not an Output)."""

    class FrameOutput(base):  # type: ignore[misc, valid-type]
        def __init__(self, on_frame: Callable[[EncodedFrame], None]) -> None:
            super().__init__()
            self.on_frame = on_frame

        def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                        packet: Any = None, audio: bool = False) -> None:
            if audio:
                return  # audio comes from pyaudio, not picamera2's pulse input
            self.on_frame(EncodedFrame(bytes(frame), int(timestamp or 0), bool(keyframe)))

    return FrameOutput


class PiCamera:
    def __init__(self, on_frame: Callable[[EncodedFrame], None], width: int = 1280,
                 height: int = 720, fps: int = 30, bitrate: int = 8_000_000) -> None:
        picamera2 = importlib.import_module("picamera2")
        encoders = importlib.import_module("picamera2.encoders")
        outputs = importlib.import_module("picamera2.outputs")
        self.cam = picamera2.Picamera2()
        config = self.cam.create_video_configuration(main={"size": (width, height)},
                                                     controls={"FrameRate": fps})
        self.cam.configure(config)
        # repeat headers on every keyframe so each segment decodes alone
        self.encoder = encoders.H264Encoder(bitrate=bitrate, repeat=True, iperiod=fps)
        self.output = output_class(outputs.Output)(on_frame)
        self.running = False

    def start(self) -> None:
        self.cam.start_recording(self.encoder, self.output)
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.cam.stop_recording()
            self.running = False

    def still(self) -> bytes:
        buf = io.BytesIO()
        self.cam.capture_file(buf, format="jpeg")
        return buf.getvalue()
