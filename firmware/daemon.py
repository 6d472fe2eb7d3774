"""The daemon: wires hal, capture and sealing to the state machine.

It turns the world into machine events (buttons, ticks with the speech the
VAD heard, battery, storage, clock, faults) and carries out the machine's
actions (capture, chain records, prompts, indicators, stills), logging one
line per event. In simulation (`--sim --scenario FILE`) time is virtual: the
scenario's seconds run as fast as the encoder allows, and every timestamp,
record and segment follows that clock, so runs are repeatable.

Only the simulated backends exist in this tree; the Pi backends (picamera2,
pyaudio, gpiozero pins) are not written yet, and `bodycam run` without
`--sim` says so.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from capture.pipeline import Capture, CaptureConfig
from capture.segmenter import SegmentInfo
from hal.camera_sim import SimCamera
from hal.media import DeviceFault
from hal.microphone_sim import RATE, SimMicrophone, SimSpeaker
from sealing.records import Stamp
from sealing.store import SegmentMeta, SegmentWriter, Store

from . import machine as m
from .scenario import Happening, Scenario
from .unitclock import UnitClock

TICK_US = 100_000


def sd_notify(message: str) -> bool:
    """systemd's notify protocol (READY=1, WATCHDOG=1, STATUS=...); no-op off systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(message.encode())
    return True


class VirtualTime:
    """The simulation's clocks: monotonic from 0, wall from a start instant."""

    def __init__(self, wall_start_ns: int) -> None:
        self.mono_ns = 1_000_000_000  # never 0: a real monotonic clock is not
        self.wall_start_ns = wall_start_ns
        self.wall_jump_ns = 0

    def monotonic_ns(self) -> int:
        return self.mono_ns

    def time_ns(self) -> int:
        return self.wall_start_ns + self.mono_ns + self.wall_jump_ns

    def true_time_ns(self) -> int:
        """What a GPS or dock would say: the wall clock without injected jumps."""
        return self.wall_start_ns + self.mono_ns


class StoreSink:
    """capture's SegmentSink onto the sealed store."""

    def __init__(self, writer: SegmentWriter, stamp_at: Callable[[int], Stamp],
                 retention: Callable[[], str], on_sealed: Callable[[Any], None]) -> None:
        self.writer = writer
        self._stamp_at = stamp_at
        self._retention = retention
        self._on_sealed = on_sealed

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self, info: SegmentInfo) -> Any:
        rec = self.writer.close(SegmentMeta(
            start=self._stamp_at(info.start_us), end=self._stamp_at(info.end_us),
            container=info.container, codecs=list(info.codecs), duration_us=info.duration_us,
            retention=self._retention(),
            extra={"video_frames": info.video_frames, "audio_samples": info.audio_samples,
                   "first_frame": info.first_frame}))
        self._on_sealed(rec)
        return rec


@dataclass
class Recorder:
    store: Store
    clock: UnitClock
    vt: VirtualTime
    camera: SimCamera
    microphone: SimMicrophone
    speaker: SimSpeaker
    policy: m.Policy
    capture_config: CaptureConfig
    log: Callable[[str], None] = print
    machine: m.Machine = field(init=False)
    capture: Capture = field(init=False)
    indicators: m.Indicate | None = None
    current_file: str | None = None
    retention: str = "supervision"
    sealed: list[Any] = field(default_factory=list)
    faulted: set[str] = field(default_factory=set)
    stop_requested: str | None = None  # set from a signal handler: SIGTERM

    def __post_init__(self) -> None:
        self.machine = m.Machine(self.policy)
        self.capture = Capture(self._open_sink, self.capture_config)

    # -- sinks ------------------------------------------------------------------

    def _stamp_at(self, mono_us: int) -> Stamp:
        now = self.clock.stamp()
        return Stamp(mono_us, now.wall_us + (mono_us - now.mono_us), now.clock_state,
                     now.clock_source)

    def _open_sink(self, index: int) -> StoreSink:
        writer = self.store.open_segment("ts")
        self.current_file = str(writer.name)
        return StoreSink(writer, self._stamp_at, lambda: self.retention, self._sealed)

    def _sealed(self, rec: Any) -> None:
        self.sealed.append(rec)
        self.log(f"sealed {rec.body['file']} ({rec.body['video_frames']} frames, "
                 f"{rec.body['ct_len']} bytes)")

    # -- events in, actions out --------------------------------------------------

    def now_us(self) -> int:
        return self.vt.mono_ns // 1000

    def event(self, event: m.Event) -> None:
        if not isinstance(event, m.Tick):
            self.log(f"event {type(event).__name__} {_fields(event)}")
        for action in self.machine.handle(event):
            self._do(action)

    def _do(self, a: m.Action) -> None:
        now = self.now_us()
        if isinstance(a, m.StartCapture):
            pre = self.capture.start(now, prerecord=a.prerecord)
            if not a.prerecord:
                self.camera.force_keyframe()  # start now, not up to a second later
            self.log(f"capture started ({a.cause}), pre-record {pre / 1e6:.1f} s")
        elif isinstance(a, m.StopCapture):
            self.capture.stop()
            self.current_file = None
            self.log(f"capture stopped ({a.cause})")
        elif isinstance(a, m.Record):
            body = dict(a.body)
            if a.type == "resume_note":
                body["file"] = self.current_file  # where the note lies in the media
            if a.type == "mark":
                self.retention = "evidence"
            rec = self.store.append(a.type, body, self.clock.stamp())
            self.log(f"record {rec.seq} {a.type} {_brief(body)}")
        elif isinstance(a, m.Prompt):
            self.speaker.play(a.name, now)
            self.log(f"prompt {a.name}")
        elif isinstance(a, m.Indicate):
            self.indicators = a
        elif isinstance(a, m.TakeStill):
            self._still()

    def _still(self) -> None:
        start = self.clock.stamp()
        w = self.store.open_segment("jpg", stamp=start)
        w.write(self.camera.still())
        rec = w.close(SegmentMeta(start=start, end=self.clock.stamp(), container="jpeg",
                                  codecs=["mjpeg"], retention=self.retention))
        self.log(f"still {rec.body['file']}")

    # -- the simulated world -------------------------------------------------------

    def happen(self, h: Happening) -> None:
        at = self.now_us()
        if h.kind in ("press", "hold", "double"):
            # judge a pending note on what was heard up to this press
            self.event(m.Tick(at, self._speech(at)))
            cls = {"press": m.Press, "hold": m.Hold, "double": m.DoublePress}[h.kind]
            self.event(cls(h.value, at))
        elif h.kind == "trigger":
            self.event(m.Trigger(str(h.value), at))
        elif h.kind == "fault":
            reason = str(h.extra.get("reason", "injected fault"))
            if h.value == "camera":
                self.camera.fail(reason)
            elif h.value == "microphone":
                self.microphone.fail(reason)
            else:
                self.event(m.Fault(str(h.value), reason, at))
        elif h.kind == "battery":
            self.event(m.Battery(int(h.value), int(h.extra.get("minutes", 60)), at))
        elif h.kind == "storage_free_mib":
            self.event(m.Storage(int(h.value) << 20, 32 << 30, at))
        elif h.kind == "gps_time":
            self.set_clock(self.vt.true_time_ns() // 1000, "gps")
        elif h.kind == "clock_jump_s":
            self.vt.wall_jump_ns += int(float(h.value) * 1e9)
            self.log(f"wall clock jumped {h.value} s")

    def set_clock(self, true_us: int, source: str) -> None:
        before = self.clock.stamp()
        if before.clock_state == "synced" and abs(true_us - before.wall_us) <= 1_000_000:
            return  # within tolerance: nothing to step
        body = self.clock.set_from(true_us, source)
        self.store.append("clock", body, self.clock.stamp())
        self.log(f"clock stepped by {body['step_us'] / 1e6:+.3f} s from {source}")
        self.event(m.ClockStatus("synced", source, self.now_us()))

    def _speech(self, at: int) -> float:
        note = self.machine.state.note
        return self.capture.speech_seconds(note.since_us, at) if note else 0.0

    def run(self, scenario: Scenario) -> None:
        fps = self.capture_config.fps
        frames = int(scenario.seconds * fps)
        pending = list(scenario.happenings)
        per_frame = RATE // fps
        t0 = self.now_us()
        next_tick = t0
        next_sync = t0 + 1_000_000
        sd_notify("READY=1")
        for i in range(frames):
            at = t0 + i * 1_000_000 // fps
            self.vt.mono_ns = at * 1000
            if self.stop_requested:
                self.log(f"stopping: {self.stop_requested}")
                self.event(m.Shutdown(self.stop_requested, at))
                sd_notify("STOPPING=1")
                return
            while pending and t0 + int(pending[0].t * 1e6) <= at:
                self.happen(pending.pop(0))
            self._media(i, at, per_frame)
            if at >= next_tick:
                self.event(m.Tick(at, self._speech(at)))
                next_tick += TICK_US
            if at >= next_sync:  # the ~1 s power-loss bound, and the watchdog
                self.store.sync_open_segments()
                sd_notify("WATCHDOG=1")
                next_sync += 1_000_000
        self.vt.mono_ns = (t0 + frames * 1_000_000 // fps) * 1000
        if self.machine.state.mode == "recording":
            self.event(m.Hold("record", self.now_us()))

    def _media(self, i: int, at: int, per_frame: int) -> None:
        if "camera" not in self.faulted:
            try:
                self.capture.push_video(self.camera.next_frame(at))
            except DeviceFault as exc:
                self.faulted.add("camera")
                self.event(m.Fault("camera", str(exc), at))
        if "microphone" not in self.faulted:
            try:
                self.capture.push_audio(self.microphone.read(i * per_frame, per_frame))
            except DeviceFault as exc:
                self.faulted.add("microphone")
                self.event(m.Fault("microphone", str(exc), at))


def _fields(event: object) -> str:
    return " ".join(f"{k}={v}" for k, v in vars(event).items() if k != "at_us")


def _brief(body: dict[str, Any]) -> str:
    keep = {k: v for k, v in body.items() if k in ("cause", "reason", "given", "speech_s",
                                                    "what", "flag", "percent")}
    return " ".join(f"{k}={v}" for k, v in keep.items())
