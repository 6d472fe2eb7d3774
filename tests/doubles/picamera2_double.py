"""A test double of the parts of picamera2 that hal/camera_pi.py uses, with
picamera2's signatures: Picamera2.create_video_configuration/configure/
start_recording(encoder, output)/stop_recording/capture_file(file, format=),
encoders.H264Encoder(bitrate=, repeat=, iperiod=), outputs.Output with
outputframe(frame, keyframe=True, timestamp=None, packet=None, audio=False).
`start_recording` feeds real H.264 from the simulated camera's encoder."""

from __future__ import annotations

import types
from typing import Any

from hal.camera_sim import SimCamera


class Output:
    def __init__(self, pts: Any = None) -> None:
        self.recording = False

    def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                    packet: Any = None, audio: bool = False) -> None:
        return None  # picamera2's base Output does nothing with a frame either


class H264Encoder:
    def __init__(self, bitrate: int | None = None, repeat: bool = False, iperiod: int | None = None,
                 framerate: float | None = None, qp: int | None = None) -> None:
        self.bitrate, self.repeat, self.iperiod = bitrate, repeat, iperiod


class Picamera2:
    frames_per_start = 45

    def __init__(self, camera_num: int = 0) -> None:
        self.config: dict[str, Any] | None = None
        self.started = False

    def create_video_configuration(self, main: dict | None = None, controls: dict | None = None,
                                   **kw: Any) -> dict[str, Any]:
        return {"main": dict(main or {"size": (1280, 720)}), "controls": dict(controls or {})}

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def start_recording(self, encoder: H264Encoder, output: Output, **kw: Any) -> None:
        if not isinstance(output, Output):
            raise TypeError("output must be a picamera2 Output")
        assert self.config is not None, "configure() first"
        w, h = self.config["main"]["size"]
        fps = int(self.config["controls"].get("FrameRate", 30))
        sim = SimCamera(w, h, fps, gop=encoder.iperiod or fps)
        self.started = True
        for i in range(self.frames_per_start):
            f = sim.next_frame(i * 1_000_000 // fps)
            output.outputframe(f.data, f.keyframe, f.pts_us)

    def stop_recording(self) -> None:
        self.started = False

    def capture_file(self, file_output: Any, name: str = "main", format: str | None = None,
                     **kw: Any) -> None:  # noqa: A002 - picamera2's parameter name
        file_output.write(b"\xff\xd8\xff\xe0" + b"\x00" * 100 + b"\xff\xd9")


def install(monkeypatch: Any) -> None:
    """Make `import picamera2` (and .encoders, .outputs) find this double."""
    import sys

    root = types.ModuleType("picamera2")
    root.Picamera2 = Picamera2  # type: ignore[attr-defined]
    enc = types.ModuleType("picamera2.encoders")
    enc.H264Encoder = H264Encoder  # type: ignore[attr-defined]
    out = types.ModuleType("picamera2.outputs")
    out.Output = Output  # type: ignore[attr-defined]
    for name, mod in (("picamera2", root), ("picamera2.encoders", enc),
                      ("picamera2.outputs", out)):
        monkeypatch.setitem(sys.modules, name, mod)
