"""The Camera port on picamera2: its H.264 encoder (V4L2 hardware on a Pi 4
and earlier, libav/libx264 on a Pi 5) feeds our Output from the encoder's
own thread; we hand each access unit on, stamped on the unit's timeline.

Timestamps. picamera2 passes `timestamp` in microseconds since the first
frame of *this encoder start* (`Encoder.start()` resets `firsttimestamp`),
so a restart begins at 0 again. `encoder.firsttimestamp` is that first
frame's SensorTimestamp in microseconds, which libcamera takes from the
kernel's monotonic clock, the same clock as `time.monotonic_ns()`. So
`firsttimestamp + timestamp` is the exposure instant on the unit's
timeline. Where that sum is not plausible (more than 5 s from now, or an
encoder without `firsttimestamp`), the frame is placed by its arrival instead,
anchored at each encoder start; either way a restart continues the timeline,
and timestamps never go backwards.

Failures. Nothing raised by the consumer may escape into picamera2's thread
(it would die silently, leaving a recording without picture): it becomes
`on_error`. A camera whose cable works loose just stops delivering, and
`stop_recording()` can then block for ever, so `stop` gives up after a few
seconds; the firmware's frame watchdog notices the silence.

picamera2 imports only on a Pi (it needs libcamera), so it is imported in
`PiCamera.__init__`. Only run against tests/doubles/picamera2_double.py.
"""

from __future__ import annotations

import importlib
import io
import threading
from collections.abc import Callable
from typing import Any

from .media import DeviceFault, EncodedFrame, GuardedHook
from .pacing import Clock
from .ports import OnError, OnFrame, OnPicture

PLAUSIBLE_US = 5_000_000
AF_MANUAL, AF_CONTINUOUS = 0, 2  # libcamera controls.AfModeEnum


def output_class(base: type) -> type:
    """Our Output subclass (the encoder rejects anything that is not an Output)."""

    class FrameOutput(base):  # type: ignore[misc, valid-type]
        def __init__(self, on_frame: Callable[[bytes, bool, int], None], on_error: OnError) -> None:
            super().__init__()
            self.on_frame, self.on_error = on_frame, on_error
            self.failed: str | None = None

        def outputframe(
            self,
            frame: bytes,
            keyframe: bool = True,
            timestamp: int | None = None,
            packet: Any = None,
            audio: bool = False,
        ) -> None:
            if audio or self.failed:
                return  # audio comes from pyaudio, not picamera2's pulse input
            try:
                self.on_frame(bytes(frame), bool(keyframe), int(timestamp or 0))
            except Exception as exc:  # noqa: BLE001 - the encoder thread's last stop: report
                self.failed = f"camera: frame handling failed: {exc!r}"
                self.on_error(self.failed)

    return FrameOutput


class Timeline:
    """Maps an encoder's per-start timestamps onto the unit's monotonic us."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._offset: int | None = None
        self._last_device = -1
        self.last_us = -1
        self.restarts = 0

    def place(self, device_us: int, sensor_base_us: int | None) -> int:
        now = self.clock.monotonic_ns() // 1000
        if self._offset is None or device_us < self._last_device:
            if self._offset is not None:
                self.restarts += 1
            base = sensor_base_us
            if base is None or abs(base + device_us - now) > PLAUSIBLE_US:
                base = now - device_us  # by arrival: the encoder's latency stays in it
            self._offset = base
        self._last_device = device_us
        pts = max(self._offset + device_us, self.last_us + 1)
        self.last_us = pts
        return pts


class PiCamera:
    name = "picamera2"

    def __init__(
        self,
        clock: Clock,
        width: int = 1280,
        height: int = 720,
        fps: int = 30,
        bitrate: int = 8_000_000,
        autofocus: bool = True,
        lens_position: float | None = None,
    ) -> None:
        picamera2 = importlib.import_module("picamera2")
        self._encoders = importlib.import_module("picamera2.encoders")
        self._outputs = importlib.import_module("picamera2.outputs")
        self._mapped_array = picamera2.MappedArray
        try:
            self.cam = picamera2.Picamera2()
        except (RuntimeError, IndexError) as exc:  # no camera: "__init__ sequence did not..."
            raise DeviceFault(f"camera: {exc}") from None
        config = self.cam.create_video_configuration(
            main={"size": (width, height)}, controls={"FrameRate": fps}
        )
        self.cam.configure(config)
        self.pixel_format = str(config["main"].get("format", "XBGR8888"))
        controls = getattr(self.cam, "camera_controls", {})
        if lens_position is not None and "LensPosition" in controls:
            # fixed focus (e.g. hyperfocal): no hunting when the scene moves
            self.cam.set_controls({"AfMode": AF_MANUAL, "LensPosition": lens_position})
        elif autofocus and "AfMode" in controls:
            self.cam.set_controls({"AfMode": AF_CONTINUOUS})  # Camera Module 3: off by default
        # SPS/PPS before every keyframe (the default) so each segment decodes alone
        self.encoder = self._encoders.H264Encoder(bitrate=bitrate, repeat=True, iperiod=fps)
        self.timeline = Timeline(clock)
        self.running = False

    def start(self, on_frame: OnFrame, on_error: OnError) -> None:
        def frame(data: bytes, keyframe: bool, timestamp: int) -> None:
            base = getattr(self.encoder, "firsttimestamp", None)
            pts = self.timeline.place(timestamp, base if isinstance(base, int) else None)
            on_frame(EncodedFrame(data, pts, keyframe))

        self.output = output_class(self._outputs.Output)(frame, on_error)
        self.cam.start_recording(self.encoder, self.output)
        self.running = True

    def stop(self, timeout_s: float = 3.0) -> None:
        if not self.running:
            return
        self.running = False
        t = threading.Thread(target=self.cam.stop_recording, name="camera-stop", daemon=True)
        t.start()
        t.join(timeout_s)  # a stalled camera can block here for ever: leave it behind

    def request_keyframe(self) -> None:
        force = getattr(self.encoder, "force_key_frame", None)  # picamera2 >= 0.3.32
        if force is not None:
            force()

    def overlay(self, hook: OnPicture | None, on_error: OnError) -> bool:
        """The hook runs from picamera2's `pre_callback`, on the main stream's
        buffer before the encoder takes it. The picture's time is its
        SensorTimestamp (ns, monotonic clock), or the call's instant."""
        if hook is None:
            self.cam.pre_callback = None
            return True
        clock, fmt, mapped = self.timeline.clock, self.pixel_format, self._mapped_array

        def on_request(request: Any, _fmt: str, _us: int) -> None:
            sensor_ns = request.get_metadata().get("SensorTimestamp")
            mono_us = (
                sensor_ns // 1000 if isinstance(sensor_ns, int) else clock.monotonic_ns() // 1000
            )
            with mapped(request, "main") as m:
                hook(m.array, fmt, mono_us)

        # everything, mapping included, under the guard: picamera2's thread must not die
        guarded = GuardedHook(on_request, on_error)
        self.cam.pre_callback = lambda request: guarded(request, fmt, 0)
        return True

    def still(self) -> bytes:
        buf = io.BytesIO()
        self.cam.capture_file(buf, format="jpeg")
        return buf.getvalue()
