"""A test double of the parts of picamera2 that hal/camera_pi.py uses, with
picamera2's signatures and its behaviour where it bites. Mirrored from
raspberrypi/picamera2 (picamera2.py, job.py, encoders/encoder.py,
v4l2_encoder.py, libav_h264_encoder.py, previews/null_preview.py):

* One event-loop thread ("picamera2-loop", NullPreview.thread_func), started
  by the first `start()`, runs `process_requests` for each completed request:
  `pre_callback`, then queued jobs, then `encoder.encode("main", request)`
  for every encoder in `encoders`. An exception there ends that thread
  (NullPreview.handle_request logs and re-raises): frames stop, jobs never
  run, and `stop()` (which dispatches `stop_` to the loop) blocks for ever.
* `capture_file` and `switch_mode_and_capture_file` are jobs
  (`dispatch_functions`): run on the loop thread, their exceptions handed to
  the caller through a Future (Job.execute), `wait=<seconds>` times out.
  Before the loop ever ran, a job waits for ever (nobody reads the notify pipe).
* `switch_mode_` is stop_, configure_, start_: the camera stops (frames
  stop; the sensor mode switch takes a while), nothing checks for a running
  encoder, and afterwards the still-mode requests go to that encoder too.
  `switch_mode_and_capture_file` switches back with `switch_mode_`, which
  leaves the camera started.
* `create_still_configuration()`: main BGR888 at `sensor_resolution`
  (4608x2592, Camera Module 3 / imx708), buffer_count 1; the double's sensor
  gives 10 fps in it (imx708's full-resolution mode tops out at 14 fps).
* Requests carry SensorTimestamp (ns, monotonic): when the exposure began,
  on the sensor's own frame grid, not when a thread got round to it (so a
  busy machine makes frames late, not their timestamps jittery); a loop
  further behind than the configuration's free buffers (buffer_count less
  those in flight) loses the older frames, as libcamera does when no
  buffer is free. `Encoder.start()` resets `firsttimestamp`;
  `timestamp` counts from the first frame of each start.
* V4L2 `H264Encoder` (Pi 4 and earlier): `encode` queues the buffer and
  frames come out of its own "v4l2-poll" thread as `outputframe(frame,
  keyframe, timestamp)`. `force_key_frame()` keys the next frame.
* `LibavH264Encoder` (Pi 5; `install(platform="pi5")` makes
  `picamera2.encoders.H264Encoder` resolve to it as encoders/__init__.py does
  off VC4): the real PyAV/libx264 calls of libav_h264_encoder.py, run on the
  loop thread; x264's frame threads give the packets back some frames after
  their pictures, and `stop()` flushes the rest on the stopping thread.
  `force_key_frame` sets `frame.pict_type = "I"`, which the venv's PyAV
  (>= 14) rejects with TypeError inside the loop thread; `pyav_major = 10`
  behaves like Debian Bookworm's PyAV 10, which took the name.
* A camera can stall (`stall()`): requests stop, nothing is raised, and
  `stop()` then blocks (picamera2 issue 1264).
* Encoder faults, injected: `encoder.fail_next = exc` makes that encoder's
  next `encode` raise `exc` on the loop thread (a V4L2 ioctl or a PyAV call
  failing), once; `Encoder.broken = exc` makes every encode of every
  encoder raise, restarted or new (a camera that keeps failing).
* `sensor_us[n]`: the SensorTimestamp (us) of the picture drawn with frame
  number n, so a test can check that a decoded picture sits at its true
  time; `recordings_started` counts `start_recording` calls.
* `Picamera2()` with no camera raises RuntimeError, as the real one does.
The picture is the simulated camera's test pattern; the H.264 and JPEG bytes
are real (libx264, PIL)."""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import types
from collections.abc import Callable
from concurrent.futures import Future
from fractions import Fraction
from functools import partial
from typing import Any

import av
import numpy as np
from PIL import Image

from hal.camera_sim import SimCamera, draw

SENSOR_RESOLUTION = (4608, 2592)  # imx708 (Camera Module 3) full resolution
STILL_FPS = 10
MODE_SWITCH_S = 0.3  # stop, reconfigure, restart: the pipeline's startup frames too
IN_FLIGHT = 2  # of a configuration's buffer_count, what the pipeline itself is filling
_log = logging.getLogger(__name__)

# request.py: memory order of each format as a PIL mode
PIL_MODE = {"XBGR8888": "RGBX", "XRGB8888": "BGRX", "BGR888": "RGB", "RGB888": "BGR"}


class CompletedRequest:
    def __init__(self, buffer: np.ndarray, metadata: dict[str, Any], config: dict) -> None:
        self.buffer, self.metadata, self.config = buffer, metadata, config

    def get_metadata(self) -> dict[str, Any]:
        return dict(self.metadata)

    def make_image(self, name: str) -> Image.Image:
        mode = PIL_MODE[self.config[name]["format"]]
        img = Image.frombuffer(mode, self.buffer.shape[1::-1], self.buffer.tobytes())
        return img.convert("RGB")

    def save(self, name: str, file_output: Any, format: str | None = None, **kw: Any) -> None:
        self.make_image(name).save(file_output, format=format)  # request.py: Helpers.save


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

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
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


class Job:
    """job.py: stages run on the loop thread; an exception ends the job and
    goes to the caller through the Future."""

    def __init__(self, functions: list[Callable[[], tuple[bool, Any]]]) -> None:
        self._functions, self._future, self._result = functions, Future[Any](), None
        self._future.set_running_or_notify_cancel()

    def execute(self) -> bool:
        try:
            while self._functions:
                done, result = self._functions[0]()
                if not done:
                    break
                self._functions.pop(0)
            if not self._functions:
                self._result = result
        except Exception as e:
            self._future.set_exception(e)
            self._functions = []
        return not self._functions

    def signal(self) -> None:
        if not self._future.done():
            self._future.set_result(self._result)

    def get_result(self, timeout: float | None = None) -> Any:
        return self._future.result(timeout=timeout)


class Encoder:
    """encoders/encoder.py: the parts every encoder shares."""

    broken: BaseException | None = None  # fault injection: every encode of every encoder raises

    def __init__(self) -> None:
        self.fail_next: BaseException | None = None  # fault injection: the next encode raises
        self._lock, self._output_lock = threading.Lock(), threading.Lock()
        self._running = False
        self._output: list[Output] = []
        self.firsttimestamp: int | None = None
        self.name, self.width, self.height, self.format = "main", 0, 0, "XBGR8888"
        self._key_frames_requested = self._key_frames_generated = 0

    @property
    def output(self) -> list[Output]:
        return self._output

    @output.setter
    def output(self, value: Output) -> None:
        if not isinstance(value, Output):
            raise RuntimeError("Must pass Output")
        self._output = [value]

    def start(self, quality: Any = None) -> None:
        with self._lock:
            if self._running:
                raise RuntimeError("Encoder already running")
            self._running = True
            self.firsttimestamp = None
            for out in self._output:
                out.start()
            self._start()

    def stop(self) -> None:
        with self._lock:
            if not self._running:
                raise RuntimeError("Encoder already stopped")
            self._running = False
            self._stop()
            for out in self._output:
                out.stop()

    def encode(self, stream: str, request: CompletedRequest) -> None:
        with self._lock:
            if not self._running:
                return
            injected, self.fail_next = self.fail_next or Encoder.broken, None
            if injected is not None:
                raise type(injected)(*injected.args)  # raised in the loop thread, as the real one
            self._encode(stream, request)

    def outputframe(
        self, frame: Any, keyframe: bool = True, timestamp: int | None = None, packet: Any = None
    ) -> None:
        with self._output_lock:
            for out in self._output:
                out.outputframe(frame, keyframe, timestamp, packet, False)

    def _timestamp(self, request: CompletedRequest) -> int:
        ts = int(request.metadata["SensorTimestamp"] / 1000)
        if self.firsttimestamp is None:
            self.firsttimestamp = ts
            return 0
        return ts - self.firsttimestamp

    def force_key_frame(self) -> None:  # h264_encoder.py / libav_h264_encoder.py (>= 0.3.32)
        self._key_frames_requested += 1

    def _start(self) -> None: ...

    def _stop(self) -> None: ...

    def _encode(self, stream: str, request: CompletedRequest) -> None: ...


class H264Encoder(Encoder):
    """V4L2 (h264_encoder.py over v4l2_encoder.py): `_encode` queues the
    buffer; thread_poll dequeues the coded frame and outputs it."""

    def __init__(
        self,
        bitrate: int | None = None,
        repeat: bool = True,
        iperiod: int | None = None,
        framerate: float | None = None,
        qp: int | None = None,
        profile: str | None = None,
    ) -> None:
        super().__init__()
        self.bitrate, self.repeat, self.iperiod, self.framerate = (
            bitrate,
            repeat,
            iperiod,
            framerate,
        )
        self._queue: queue.Queue[tuple[np.ndarray, int, bool] | None] = queue.Queue()

    def _start(self) -> None:
        fps = int(self.framerate or 30)
        sim = SimCamera(self.width, self.height, fps, gop=self.iperiod or fps)
        self._queue = q = queue.Queue()

        def thread_poll() -> None:
            while (item := q.get()) is not None:
                img, ts, key = item
                if key:
                    sim.force_keyframe()
                f = sim.encode(img, 0)
                self.outputframe(f.data, f.keyframe, ts)  # v4l2_encoder.py: 3 positional

        self.thread = threading.Thread(target=thread_poll, name="v4l2-poll", daemon=True)
        self.thread.start()

    def _stop(self) -> None:
        self._queue.put(None)
        self.thread.join()

    def _encode(self, stream: str, request: CompletedRequest) -> None:
        if request.buffer.shape[:2] != (self.height, self.width):
            # the real one queues the dmabuf with the stream's old geometry; be loud instead
            raise ValueError(
                f"request of {request.buffer.shape} for a {self.width}x{self.height} encoder"
            )
        key = self._key_frames_requested > self._key_frames_generated
        if key:
            self._key_frames_generated += 1
        ts = self._timestamp(request)
        self._queue.put((np.ascontiguousarray(request.buffer[:, :, :3]), ts, key))


class LibavH264Encoder(Encoder):
    """libav_h264_encoder.py, its PyAV calls as they are (the Pi 5's H264Encoder)."""

    pyav_major = int(av.__version__.split(".")[0])  # 10: Debian Bookworm's python3-av

    def __init__(
        self,
        bitrate: int | None = None,
        repeat: bool = True,
        iperiod: int = 30,
        framerate: float = 30,
        qp: int | None = None,
        profile: str | None = None,
    ) -> None:
        super().__init__()
        self.bitrate, self.repeat, self.iperiod, self.framerate = (
            bitrate,
            repeat,
            iperiod,
            framerate,
        )
        self.qp, self.threads, self.drop_final_frames = qp, 0, False
        self._request_release_queue: collections.deque[CompletedRequest] = collections.deque()

    def _start(self) -> None:
        self._container = av.open("/dev/null", "w", format="null")
        self._stream = s = self._container.add_stream("h264", rate=int(self.framerate))
        s.codec_context.thread_count = self.threads
        s.codec_context.thread_type = av.codec.context.ThreadType.FRAME
        s.width, s.height, s.pix_fmt = self.width, self.height, "yuv420p"
        if self.bitrate is not None:
            s.codec_context.bit_rate = self.bitrate
        s.codec_context.gop_size = self.iperiod or (1 << 31) - 1
        s.codec_context.options = {"preset": "ultrafast", "deblock": "1", "tune": "zerolatency"}
        s.codec_context.time_base = Fraction(1, 1000000)
        fmt = {"YUV420": "yuv420p", "BGR888": "rgb24", "RGB888": "bgr24", "XBGR8888": "rgba"}
        self._av_input_format = fmt[self.format]

    def _stop(self) -> None:
        if not self.drop_final_frames:  # the frames x264 still holds: on the stopping thread
            for packet in self._stream.encode():
                self.outputframe(bytes(packet), packet.is_keyframe, packet.pts, packet)
        self._request_release_queue.clear()
        self._container.close()

    def _encode(self, stream: str, request: CompletedRequest) -> None:
        self._request_release_queue.append(request)
        timestamp_us = self._timestamp(request)
        with MappedArray(request, stream) as m:
            frame = av.VideoFrame.from_numpy_buffer(
                m.array, format=self._av_input_format, width=self.width
            )
            frame.pts = timestamp_us
            if self._key_frames_requested > self._key_frames_generated:
                self._key_frames_generated += 1
                if self.pyav_major >= 14:
                    frame.pict_type = "I"  # type: ignore[assignment]  # TypeError, as on the unit
                else:
                    frame.pict_type = av.video.frame.PictureType.I  # what PyAV 10 made of "I"
            for packet in self._stream.encode(frame):
                self.outputframe(bytes(packet), packet.is_keyframe, packet.pts, packet)
        while len(self._request_release_queue) > 1:
            self._request_release_queue.popleft()


class Picamera2:
    cameras = 1  # set to 0: no camera on the ribbon

    def __init__(self, camera_num: int = 0) -> None:
        if Picamera2.cameras == 0:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.sensor_resolution = SENSOR_RESOLUTION
        self.camera_config: dict[str, Any] | None = None
        self.camera_controls = {
            "AfMode": (0, 2, 0),
            "LensPosition": (0.0, 15.0, 1.0),
            "FrameRate": (1.0, 120.0, 30.0),
        }
        self.controls: dict[str, Any] = {}
        self.started = self.stalled = False
        self.pre_callback: Any = None
        self.lock = threading.RLock()
        self.completed_requests: list[CompletedRequest] = []
        self._encoders: set[Encoder] = set()
        self._job_list: list[Job] = []
        self._wake = threading.Condition()
        self._notified = False
        self._loop: threading.Thread | None = None
        self.loop_error: BaseException | None = None  # what ended the loop thread
        self._due = 0.0
        self._frames = 0
        self._frame_drops = 0
        self._reconfigured = False
        self.stop_count = 0
        self.recordings_started = 0
        self.sensor_us: dict[int, int] = {}  # frame number drawn -> SensorTimestamp (us)
        self.fail_capture: Exception | None = None  # raised by the next capture_file_

    # -- configurations -------------------------------------------------------------------------

    def create_video_configuration(
        self, main: dict | None = None, controls: dict | None = None, **kw: Any
    ) -> dict[str, Any]:
        main = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}
        return {
            "use_case": "video",
            "main": main,
            "controls": dict(controls or {}),
            "buffer_count": 6,
        }

    def create_still_configuration(
        self, main: dict | None = None, controls: dict | None = None, **kw: Any
    ) -> dict[str, Any]:
        main = {"format": "BGR888", "size": self.sensor_resolution, **(main or {})}
        return {
            "use_case": "still",
            "main": main,
            "controls": dict(controls or {}),
            "buffer_count": 1,
        }

    def configure(self, camera_config: dict[str, Any]) -> None:
        self.configure_(camera_config)

    def configure_(self, camera_config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self._reconfigured = camera_config is not self.camera_config
        self.camera_config = camera_config

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.controls.update(controls)

    # -- start and stop: the event loop ---------------------------------------------------------

    def start(self, config: dict | None = None, show_preview: bool | None = False) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if show_preview is not None and self._loop is None:
            self._loop = threading.Thread(
                target=self._thread_func, name="picamera2-loop", daemon=True
            )
            self._loop.start()  # NullPreview: runs until close()
        self.start_()

    def start_(self) -> None:
        if self.started:
            return
        self.started = True
        with self._wake:
            # a new sensor mode takes a while to come up; a plain restart about a frame
            restart = MODE_SWITCH_S if self._reconfigured else self._period()
            self._due = time.monotonic() + (restart if self.stop_count else 0.0)
            self._reconfigured = False
            self._wake.notify()

    def stop(self) -> None:
        if not self.started:
            return
        if self._loop is not None:  # dispatched to the loop and waited for, as the real one
            self._dispatch([self.stop_], wait=True, immediate=True)
        else:
            self.stop_()

    def stop_(self) -> tuple[bool, None]:
        if self.started:
            if self.stalled:
                threading.Event().wait()  # camera.stop() on a timed-out frontend: for ever
            self.stop_count += 1
            self.started = False
            self.completed_requests = []
        return (True, None)

    def start_recording(self, encoder: Encoder, output: Output, **kw: Any) -> None:
        self.recordings_started += 1
        self.start_encoder(encoder, output)
        self.start()

    def start_encoder(self, encoder: Encoder, output: Output, **kw: Any) -> None:
        encoder.output = output
        assert self.camera_config is not None, "configure() first"
        main = self.camera_config["main"]
        encoder.name = "main"
        encoder.width, encoder.height = main["size"]
        encoder.format = main["format"]
        if getattr(encoder, "framerate", 0) is None:
            encoder.framerate = self.camera_config["controls"].get("FrameRate", 30)  # type: ignore[attr-defined]
        encoder.start()
        with self.lock:
            self._encoders.add(encoder)

    def stop_recording(self) -> None:
        self.stop()
        self.stop_encoder()

    def stop_encoder(self) -> None:
        remove = list(self._encoders)
        for encoder in remove:
            encoder.stop()
        with self.lock:
            for encoder in remove:
                self._encoders.discard(encoder)

    @property
    def encoders(self) -> set[Encoder]:
        return self._encoders

    def stall(self) -> None:
        self.stalled = True

    def _period(self) -> float:
        assert self.camera_config is not None
        if self.camera_config["use_case"] == "still":
            return 1 / STILL_FPS
        return 1 / float(self.camera_config["controls"].get("FrameRate", 30))

    def _thread_func(self) -> None:
        while True:
            with self._wake:
                while True:
                    now = time.monotonic()
                    frame_due = self.started and not self.stalled and now >= self._due
                    if self._notified or frame_due:
                        break
                    self._wake.wait(max(0.001, self._due - now) if self.started else 0.2)
                self._notified = False
                exposed = self._due
                if frame_due:
                    period = self._period()
                    held = max(1, int(self.camera_config["buffer_count"]) - IN_FLIGHT)
                    behind = int((now - self._due) / period)
                    if behind > held:  # no free buffer for the older frames: dropped
                        exposed += (behind - held) * period
                    self._due = exposed + period
            try:
                self.process_requests([self._request(exposed)] if frame_due else [])
            except Exception as exc:
                _log.error("Exception during process_requests(): %r", exc)
                self.loop_error = exc  # the thread ends; nothing tells the application
                return

    def _request(self, exposed_s: float) -> CompletedRequest:
        assert self.camera_config is not None
        w, h = self.camera_config["main"]["size"]
        img = draw(self._frames, w, h)
        meta = {"SensorTimestamp": int(exposed_s * 1e9)}
        self.sensor_us[self._frames] = meta["SensorTimestamp"] // 1000
        self._frames += 1
        if self.camera_config["main"]["format"] == "XBGR8888":
            buf = np.full((h, w, 4), 255, np.uint8)
            buf[:, :, :3] = img
        else:
            buf = img
        return CompletedRequest(buf, meta, dict(self.camera_config))

    def process_requests(self, requests: list[CompletedRequest]) -> None:
        """picamera2.py: process_requests, in its order."""
        finished = []
        with self.lock:
            self.completed_requests += requests
            if self.pre_callback:
                for req in requests:
                    self.pre_callback(req)
            while self._job_list:
                if self._job_list[0].execute():
                    finished.append(self._job_list.pop(0))
                else:
                    break
            for req in requests:
                for encoder in list(self._encoders):
                    encoder.encode(encoder.name, req)
            del self.completed_requests[:-1]
        for job in finished:
            job.signal()

    def _dispatch(
        self, functions: list[Callable[[], tuple[bool, Any]]], wait: Any, immediate: bool = False
    ) -> Any:
        if wait is None:
            wait = True
        with self.lock:
            only = not self._job_list
            job = Job(functions)
            self._job_list.append(job)
            if only and (self.completed_requests or immediate):
                with self._wake:
                    self._notified = True
                    self._wake.notify()
        return job.get_result(None if wait is True else wait) if wait else job

    # -- captures (jobs) ------------------------------------------------------------------------

    def capture_file_(
        self,
        file_output: Any,
        name: str,
        format: str | None = None,
    ) -> tuple[bool, Any]:
        if not self.completed_requests:
            return (False, None)
        request = self.completed_requests.pop(0)
        if self.fail_capture is not None:
            exc, self.fail_capture = self.fail_capture, None
            raise exc
        request.save(name, file_output, format=format)
        return (True, request.get_metadata())

    def capture_file(
        self,
        file_output: Any,
        name: str = "main",
        format: str | None = None,
        wait: Any = None,
        signal_function: Any = None,
        exif_data: Any = None,
    ) -> Any:
        return self._dispatch([partial(self.capture_file_, file_output, name, format)], wait)

    def switch_mode_(self, camera_config: dict[str, Any]) -> tuple[bool, Any]:
        self.stop_()
        self.configure_(camera_config)
        self.start_()
        return (True, self.camera_config)

    def set_frame_drops_(self, n: int) -> tuple[bool, None]:
        self._frame_drops = n
        return (True, None)

    def drop_frames_(self) -> tuple[bool, None]:
        while self.completed_requests:
            if self._frame_drops == 0:
                return (True, None)
            self.completed_requests.pop(0)
            self._frame_drops -= 1
        return (False, None)

    def switch_mode_and_capture_file(
        self,
        camera_config: dict[str, Any],
        file_output: Any,
        name: str = "main",
        format: str | None = None,
        wait: Any = None,
        signal_function: Any = None,
        exif_data: Any = None,
        delay: int = 0,
    ) -> Any:
        preview_config = self.camera_config
        assert preview_config is not None

        def capture_and_switch_back_() -> tuple[bool, Any]:
            done, result = self.capture_file_(file_output, name, format=format)
            if not done:
                return (False, None)
            self.switch_mode_(preview_config)
            return (True, result)

        functions = [
            partial(self.switch_mode_, camera_config),
            partial(self.set_frame_drops_, delay),
            self.drop_frames_,
            capture_and_switch_back_,
        ]
        return self._dispatch(functions, wait, immediate=True)


def install(monkeypatch: Any, platform: str = "vc4") -> None:
    """Make `import picamera2` (and .encoders, .outputs) find this double;
    platform "pi5" makes `H264Encoder` the libav encoder (encoders/__init__.py)."""
    import sys

    root = types.ModuleType("picamera2")
    root.Picamera2 = Picamera2  # type: ignore[attr-defined]
    root.MappedArray = MappedArray  # type: ignore[attr-defined]
    enc = types.ModuleType("picamera2.encoders")
    enc.Encoder = Encoder  # type: ignore[attr-defined]
    enc.LibavH264Encoder = LibavH264Encoder  # type: ignore[attr-defined]
    enc.H264Encoder = LibavH264Encoder if platform == "pi5" else H264Encoder  # type: ignore[attr-defined]
    out = types.ModuleType("picamera2.outputs")
    out.Output = Output  # type: ignore[attr-defined]
    for name, mod in (("picamera2", root), ("picamera2.encoders", enc), ("picamera2.outputs", out)):
        monkeypatch.setitem(sys.modules, name, mod)
