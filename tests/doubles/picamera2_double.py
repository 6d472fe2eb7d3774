"""A test double of the parts of picamera2 that hal/camera_pi.py uses, with
picamera2's signatures and its behaviour where it bites:

* `start_recording(encoder, output)` returns at once; frames then arrive on
  a thread of the encoder's own, in real time, as `outputframe(frame,
  keyframe, timestamp)` (the V4L2 encoder's three positional arguments);
* `encoder.start()` resets `firsttimestamp`: `timestamp` counts from the
  first frame of each start, and `firsttimestamp` is that frame's
  SensorTimestamp in microseconds on the monotonic clock;
* `force_key_frame()` makes the next frame a keyframe (picamera2 >= 0.3.32);
* a camera can stall (`stall()`): frames stop, nothing is raised, and then
  `stop_recording()` blocks (picamera2 issue 1264);
* `Picamera2()` with no camera raises RuntimeError, as the real one does;
* `pre_callback(request)` runs on each picture before it is encoded, with
  `MappedArray(request, "main").array` the XBGR8888 buffer (the default
  video format: (h, w, 4) bytes R, G, B, 255) and `request.get_metadata()`
  holding SensorTimestamp in ns (monotonic); real picamera2 calls it from
  its camera-manager thread, the double from its frame thread.
The H.264 is real: the simulated camera's libx264 encoder."""

from __future__ import annotations

import threading
import time
import types
from typing import Any

import numpy as np

from hal.camera_sim import SimCamera, draw


class CompletedRequest:
    def __init__(self, buffer: np.ndarray, metadata: dict[str, Any]) -> None:
        self.buffer, self.metadata = buffer, metadata

    def get_metadata(self) -> dict[str, Any]:
        return dict(self.metadata)


class MappedArray:
    def __init__(
        self, request: CompletedRequest, stream: str, reshape: bool = True, write: bool = True
    ) -> None:
        if stream != "main":
            raise KeyError(stream)
        self.array = request.buffer

    def __enter__(self) -> MappedArray:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class Output:
    def __init__(self, pts: Any = None) -> None:
        self.recording = False

    def outputframe(
        self,
        frame: bytes,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        return None  # picamera2's base Output does nothing with a frame either


class H264Encoder:
    def __init__(
        self,
        bitrate: int | None = None,
        repeat: bool = True,
        iperiod: int | None = None,
        framerate: float | None = None,
        qp: int | None = None,
    ) -> None:
        self.bitrate, self.repeat, self.iperiod = bitrate, repeat, iperiod
        self.firsttimestamp: int | None = None
        self._force = False

    def start(self) -> None:
        self.firsttimestamp = None  # as Encoder.start() does

    def force_key_frame(self) -> None:
        self._force = True


class Picamera2:
    cameras = 1  # set to 0: no camera on the ribbon

    def __init__(self, camera_num: int = 0) -> None:
        if Picamera2.cameras == 0:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.config: dict[str, Any] | None = None
        self.camera_controls = {
            "AfMode": (0, 2, 0),
            "LensPosition": (0.0, 15.0, 1.0),
            "FrameRate": (1.0, 120.0, 30.0),
        }
        self.controls: dict[str, Any] = {}
        self.started = False
        self.stalled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sim: SimCamera | None = None
        self.pre_callback: Any = None

    def create_video_configuration(
        self, main: dict | None = None, controls: dict | None = None, **kw: Any
    ) -> dict[str, Any]:
        main = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}
        return {"main": main, "controls": dict(controls or {})}

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.controls.update(controls)

    def start_recording(self, encoder: H264Encoder, output: Output, **kw: Any) -> None:
        if not isinstance(output, Output):
            raise TypeError("output must be a picamera2 Output")
        assert self.config is not None, "configure() first"
        w, h = self.config["main"]["size"]
        fps = int(self.config["controls"].get("FrameRate", 30))
        if self._sim is None:
            self._sim = SimCamera(w, h, fps, gop=encoder.iperiod or fps)
        sim = self._sim
        encoder.start()
        self._stop.clear()
        self.started = True

        def deliver() -> None:
            period = 1 / fps
            due = time.monotonic()
            while not self._stop.is_set():
                due += period
                time.sleep(max(0.0, due - time.monotonic()))
                if self.stalled:
                    continue  # "Camera frontend has timed out!": frames just stop
                sensor_ns = time.monotonic_ns()
                sensor_us = sensor_ns // 1000
                if encoder._force:
                    sim.force_keyframe()
                    encoder._force = False
                buf = np.full((h, w, 4), 255, np.uint8)
                buf[:, :, :3] = draw(sim.frames_made, w, h)
                if self.pre_callback is not None:
                    self.pre_callback(CompletedRequest(buf, {"SensorTimestamp": sensor_ns}))
                f = sim.encode(np.ascontiguousarray(buf[:, :, :3]), 0)
                if encoder.firsttimestamp is None:
                    encoder.firsttimestamp = sensor_us
                output.outputframe(f.data, f.keyframe, sensor_us - encoder.firsttimestamp)

        self._thread = threading.Thread(target=deliver, name="v4l2-poll", daemon=True)
        self._thread.start()

    def stop_recording(self) -> None:
        if self.stalled:
            threading.Event().wait()  # blocks for ever, as a timed-out frontend does
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.started = False

    def stall(self) -> None:
        self.stalled = True

    def capture_file(
        self, file_output: Any, name: str = "main", format: str | None = None, **kw: Any
    ) -> None:  # noqa: A002 - picamera2's parameter name
        assert self._sim is not None
        file_output.write(self._sim.still())


def install(monkeypatch: Any) -> None:
    """Make `import picamera2` (and .encoders, .outputs) find this double."""
    import sys

    root = types.ModuleType("picamera2")
    root.Picamera2 = Picamera2  # type: ignore[attr-defined]
    root.MappedArray = MappedArray  # type: ignore[attr-defined]
    enc = types.ModuleType("picamera2.encoders")
    enc.H264Encoder = H264Encoder  # type: ignore[attr-defined]
    out = types.ModuleType("picamera2.outputs")
    out.Output = Output  # type: ignore[attr-defined]
    for name, mod in (("picamera2", root), ("picamera2.encoders", enc), ("picamera2.outputs", out)):
        monkeypatch.setitem(sys.modules, name, mod)
