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

Encoder errors. picamera2 calls `encoder.encode()` from its event-loop
thread (`process_requests`); an exception there ends that thread (NullPreview
`handle_request` re-raises): frames stop, and `stop()` then waits for ever on
the dead loop. The known one: on a Pi 5, `H264Encoder` is `LibavH264Encoder`,
whose forced keyframe sets `frame.pict_type = "I"`, a TypeError with PyAV >= 14.
So our encoder is a subclass whose `encode` catches and reports through
`on_error` (once); the loop lives on, and after a failed forced keyframe
`request_keyframe` does nothing (the GOP gives a keyframe within a second).

Restarts. The runtime restarts a camera that reported a fault (`stop`, then
`start`: docs/HARDWARE.md, "Encoder errors"). Every `start` after the first
makes a fresh encoder: the old one may be in any state, and its fault is
reported only once, so reusing it would hide the next one. What a forced
keyframe taught us (`force_broken`) carries over: asking again would only
fail again. The Timeline is told of each start, so the first frame of a
start is placed by its own SensorTimestamp even when the last start ended
before its second frame. A `stop` that did not finish in time (picamera2's
thread is stuck) makes the next `start` a DeviceFault instead of a second
encoder on a camera that never stopped.

Stills. Picamera2 cannot give a full-resolution picture while the video runs
without a mode switch (`switch_mode_and_capture_file` is stop_, configure_,
start_: the video stops for the switch, and nothing there checks for a running
encoder, which then gets the still mode's frames). A second full-resolution
stream (main at sensor size, video on lores) or a full-size raw stream would
put the sensor in its full-resolution mode for the video too (imx708: 14 fps).
So: while the encoder runs, a still is the video stream's current frame
(`capture_file`, which runs as a job on the camera thread between frames,
dropping none); with the encoder stopped, the still configuration at sensor
size. `last_still` says which (`source` "video" or "sensor", and the size),
and the JPEG carries the same in a COM segment (capture/stills.py keeps it).

picamera2 imports only on a Pi (it needs libcamera), so it is imported in
`PiCamera.__init__`. Only run against tests/doubles/picamera2_double.py
(V4L2 and, with `platform="pi5"`, libav encoders), never on a Pi.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .media import DeviceFault, EncodedFrame, GuardedHook
from .pacing import Clock
from .ports import OnError, OnFrame, OnPicture

PLAUSIBLE_US = 5_000_000
AF_MANUAL, AF_CONTINUOUS = 0, 2  # libcamera controls.AfModeEnum
STILL_TIMEOUT_S = 5.0  # a capture job the camera thread never runs (stalled or dead loop)
STOP_TIMEOUT_S = 3.0
STALE_US = 500_000  # a still older than this is not "now" (a stalled camera's last frame)
SOI, COM = b"\xff\xd8", b"\xff\xfe"


@dataclass(frozen=True)
class StillMeta:
    """Where a still came from: "sensor" (the still mode at sensor size, taken
    with no video running) or "video" (a frame of the running video stream)."""

    source: str
    width: int
    height: int

    def comment(self) -> bytes:
        return f"bodycam still_source={self.source} size={self.width}x{self.height}".encode()


def with_comment(jpeg: bytes, text: bytes) -> bytes:
    """`jpeg` with a COM segment right after SOI (pixels untouched)."""
    if not jpeg.startswith(SOI):
        raise DeviceFault("camera: the still is not a JPEG")
    return SOI + COM + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def in_thread(fn: Callable[[], object], timeout_s: float, name: str) -> threading.Thread:
    """Run `fn` on a thread of its own and wait at most `timeout_s`; the
    thread is returned, alive if `fn` has not returned (picamera2 can block
    for ever on a stalled camera: leave it behind)."""
    t = threading.Thread(target=fn, name=name, daemon=True)
    t.start()
    t.join(timeout_s)
    return t


def within(fn: Callable[[], object], timeout_s: float, name: str) -> bool:
    """`in_thread`: True if `fn` returned in time."""
    return not in_thread(fn, timeout_s, name).is_alive()


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
            except Exception as exc:
                self.failed = f"camera: frame handling failed: {exc!r}"
                self.on_error(self.failed)

    return FrameOutput


def encoder_class(base: type) -> type:
    """picamera2's H264Encoder (V4L2 or libav, whichever the platform gives),
    with `encode` guarded: picamera2 calls it on its event-loop thread, which
    an exception would end (frames stop, `stop()` hangs)."""

    class GuardedEncoder(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.on_fault: OnError | None = None
            self.fault: str | None = None
            self.force_broken = False  # a forced keyframe failed: stop asking

        def encode(self, stream: Any, request: Any) -> None:
            # libav_h264_encoder.py: `_encode` acts on requested > generated
            forcing = getattr(self, "_key_frames_requested", 0) > getattr(
                self, "_key_frames_generated", 0
            )
            try:
                super().encode(stream, request)
            except Exception as exc:
                self.force_broken = self.force_broken or forcing
                if self.fault is None:
                    why = " on a forced keyframe" if forcing else ""
                    self.fault = f"camera: the encoder failed{why} in picamera2's thread: {exc!r}"
                    if self.on_fault is not None:
                        self.on_fault(self.fault)

    return GuardedEncoder


class Timeline:
    """Maps an encoder's per-start timestamps onto the unit's monotonic us."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._offset: int | None = None
        self._last_device = -1
        self.last_us = -1
        self.restarts = 0

    def new_start(self) -> None:
        """The encoder (re)starts: its next frame is placed afresh. Detecting
        the restart by timestamps going back is not enough: a start that gave
        only its first frame (timestamp 0) is followed by another 0."""
        self._last_device = 1 << 62

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
        self.video_config = config
        self.pixel_format = str(config["main"].get("format", "XBGR8888"))
        controls = getattr(self.cam, "camera_controls", {})
        if lens_position is not None and "LensPosition" in controls:
            # fixed focus (e.g. hyperfocal): no hunting when the scene moves
            self.cam.set_controls({"AfMode": AF_MANUAL, "LensPosition": lens_position})
        elif autofocus and "AfMode" in controls:
            self.cam.set_controls({"AfMode": AF_CONTINUOUS})  # Camera Module 3: off by default
        self._bitrate, self._fps = bitrate, fps
        self.encoder = self._new_encoder()
        self.timeline = Timeline(clock)
        self.running = False
        self.starts = 0
        self._stopping: threading.Thread | None = None  # a stop that did not finish in time
        self.last_still: StillMeta | None = None

    def _new_encoder(self) -> Any:
        # SPS/PPS before every keyframe (the default) so each segment decodes alone
        return encoder_class(self._encoders.H264Encoder)(
            bitrate=self._bitrate, repeat=True, iperiod=self._fps
        )

    def start(self, on_frame: OnFrame, on_error: OnError) -> None:
        if self._stopping is not None and self._stopping.is_alive():
            raise DeviceFault(
                "camera: the last stop has not finished (picamera2's thread is stuck)"
            )
        if self.starts:  # a restart: a fresh encoder, knowing what the old one learnt
            old, self.encoder = self.encoder, self._new_encoder()
            self.encoder.force_broken = old.force_broken
        self.starts += 1
        encoder = self.encoder  # this start's: an old one's flushed frames keep their own base
        self.timeline.new_start()

        def frame(data: bytes, keyframe: bool, timestamp: int) -> None:
            base = getattr(encoder, "firsttimestamp", None)
            pts = self.timeline.place(timestamp, base if isinstance(base, int) else None)
            on_frame(EncodedFrame(data, pts, keyframe))

        self.output = output_class(self._outputs.Output)(frame, on_error)
        encoder.on_fault = on_error
        try:
            self.cam.start_recording(encoder, self.output)
        except Exception as exc:
            # an encoder left running would take the next start's frames too
            within(self._drop_encoders, STOP_TIMEOUT_S, "camera-stop")
            raise DeviceFault(f"camera: could not start recording: {exc!r}") from None
        self.running = True

    def _drop_encoders(self) -> None:
        # best effort after a failed start, which is reported as it is
        with contextlib.suppress(Exception):
            self.cam.stop_encoder()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if not self.running:
            return
        self.running = False
        t = in_thread(self.cam.stop_recording, timeout_s, "camera-stop")
        self._stopping = t if t.is_alive() else None

    def request_keyframe(self) -> None:
        force = getattr(self.encoder, "force_key_frame", None)  # picamera2 >= 0.3.32
        if force is not None and not self.encoder.force_broken:
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
        """Recording: the video stream's current frame, no frame lost. Not
        recording: a still at the sensor's full size. `last_still` says which."""
        source = "video" if self.running else "sensor"
        jpeg = self._capture() if self.running else self._standby_still()
        try:
            with Image.open(io.BytesIO(jpeg)) as img:
                width, height = img.size
        except OSError as exc:
            raise DeviceFault(f"camera: the still is not a JPEG: {exc}") from None
        self.last_still = StillMeta(source, width, height)
        return with_comment(jpeg, self.last_still.comment())

    def _capture(self) -> bytes:
        """`capture_file` runs as a job on picamera2's thread: wait a bounded time."""
        buf = io.BytesIO()
        asked_us = self.timeline.clock.monotonic_ns() // 1000
        try:
            meta = self.cam.capture_file(buf, format="jpeg", wait=STILL_TIMEOUT_S)
        except TimeoutError:  # concurrent.futures.TimeoutError is TimeoutError (3.11)
            raise DeviceFault(f"camera: no still within {STILL_TIMEOUT_S:g} s") from None
        except Exception as exc:
            raise DeviceFault(f"camera: still capture failed: {exc!r}") from None
        # picamera2 keeps the last completed request: a stalled camera hands that over.
        # Its age is counted to when the still was asked for, not to when the JPEG
        # was done: encoding 12 MP takes long on a busy Pi and is no staleness
        sensor_ns = meta.get("SensorTimestamp") if isinstance(meta, dict) else None
        if isinstance(sensor_ns, int):
            age = asked_us - sensor_ns // 1000
            if STALE_US < age < PLAUSIBLE_US:
                raise DeviceFault(f"camera: the newest picture is {age / 1e6:.1f} s old")
        return buf.getvalue()

    def _standby_still(self) -> bytes:
        """Configure the still mode (sensor size), start, capture, stop, back to
        the video configuration. Not `switch_mode_and_capture_file`: that
        waits for ever if picamera2's loop never ran, and leaves the camera
        started in the video mode."""
        hook, self.cam.pre_callback = self.cam.pre_callback, None  # it expects the video format
        try:
            try:
                self.cam.configure(self.cam.create_still_configuration())
                self.cam.start()
            except Exception as exc:
                raise DeviceFault(f"camera: still mode failed: {exc!r}") from None
            return self._capture()
        finally:
            self._back_to_video()
            self.cam.pre_callback = hook

    def _back_to_video(self) -> None:
        if not within(self.cam.stop, STOP_TIMEOUT_S, "camera-still-stop"):
            raise DeviceFault("camera: did not stop after a still")
        try:
            self.cam.configure(self.video_config)
        except Exception as exc:
            raise DeviceFault(f"camera: video mode not restored after a still: {exc!r}") from None
