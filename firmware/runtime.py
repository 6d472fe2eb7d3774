"""The recorder's runtime: devices in, machine in the middle, evidence out.

Device threads (the camera's encoder thread, PortAudio's, gpiozero's pin
thread, the GPS reader) only put events on one queue. One loop thread owns
the state machine, capture and the store: it takes events off the queue,
turns them into machine events, and carries out the machine's actions
(capture, chain records, prompts on the speaker, the indicators). So
nothing in capture/ or sealing/ is ever called from two threads.

Time comes from one injectable clock. Live (`run`), the loop waits on the
queue and turns at least every tick; in a scenario run on virtual time the
driver advances the clock, the simulated devices deliver on that step, and
the driver calls `pump()`. The same Recorder does both; nothing here knows
which devices or which clock it has.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from boot import selftest
from capture import gopsign
from capture.pipeline import Capture, CaptureConfig
from capture.segmenter import SegmentInfo
from capture.sei import FrameTime
from capture.stills import StillInfo, with_exif
from capture.watermark import Face, Watermark
from hal.gps import Fix, SerialGps, SimGps
from hal.media import DeviceFault, EncodedFrame, PcmChunk
from hal.pacing import Clock
from hal.ports import AudioGap, Played, Rtc
from hal.rtc import RtcInvalid
from link.messages import Assignment
from sealing.canonical import b64
from sealing.keys import fingerprint
from sealing.records import Stamp
from sealing.store import SYNC_INTERVAL_S, SegmentMeta, SegmentWriter, Store

from . import machine as m
from .devices import DeviceConfig, Devices
from .export_service import assignment_body
from .place import Fixes
from .preuse import Delivered, FileChecks, device_checks
from .prompts import PromptBank
from .signals import ALERTS, lights_for
from .stalls import STALL_US, Stall, StallWatch
from .unitclock import AUTHENTICATED, BUILD_UTC_US, UnitClock, as_offered, outside_window

TICK_US = 100_000
SECOND_US = 1_000_000  # the clock, storage and battery checks; the watchdog's pat
# The open segment's tail is checkpointed and fdatasynced on the writer's
# cadence (and by the writer on every write that finds it due). Media are
# written only at turns, so that cadence is two ticks: a tail waits at most a
# tick to be written and one more to be synced. With the muxer passing every
# packet on at once, a power cut loses at most that plus what capture still
# holds back to interleave (docs/CAPTURE.md, "Power cuts").
FLUSH_US = round(SYNC_INTERVAL_S * SECOND_US)
# One turn of the loop takes queued items, then hands the segmenter the
# pre-record backlog (DRAIN_ITEMS at a time), for at most TURN_US in all, then
# runs the timers: a loop that falls behind (a slow CPU, a 30 s pre-record
# being sealed) still ticks, pats the watchdog and takes the next press
# within a turn, and the press lights the LED before the pre-record is sealed.
TURN_US = 50_000
GAP_MERGE_US = 1_000_000  # microphone overflows closer than this are one audio_gap record
GAP_RECORD_US = 10_000_000  # a longer run of them is recorded every 10 s as it goes
DRAIN_ITEMS = 8
CLOCK_TOLERANCE_US = 1_000_000
# A sync that finds the clock right is still recorded once an hour: the chain
# is where the last sync is kept across power-offs (holdover is judged on it).
RECONFIRM_US = 3600 * 1_000_000
DOCK_TIME_WAIT_S = 5.0
RESTARTER_JOIN_S = 5.0  # at shutdown: a camera restart under way may finish first


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


SEALED_KEPT = 64


@dataclass
class SealedTotals:
    """What the recorder has sealed since it started."""

    segments: int = 0
    video_frames: int = 0
    duration_us: int = 0

    def add(self, body: dict[str, Any]) -> None:
        self.segments += 1
        self.video_frames += int(body.get("video_frames") or 0)
        self.duration_us += int(body.get("duration_us") or 0)


# -- what device threads put on the queue -------------------------------------------


@dataclass(frozen=True)
class GestureIn:
    gesture: str  # press | hold | double | active | inactive
    line: str
    at_us: int


@dataclass(frozen=True)
class DeviceError:
    device: str
    reason: str
    gen: int = 0  # the camera: which start reported it (an earlier start's report is stale)


@dataclass(frozen=True)
class CameraRestarting:
    """From the restart thread, just before the camera is started again: its
    frames from `at_us` on are the new start's (put on the queue before any of them)."""

    gen: int
    at_us: int


@dataclass(frozen=True)
class DockTime:
    """The dock's time, from the export service's thread; answered on `reply`."""

    t_us: int
    dock: str
    reply: Future[dict[str, Any]]


@dataclass(frozen=True)
class Checkout:
    """A verified assignment from the export service's thread; answered on `reply`."""

    assignment: Assignment
    dock: str
    reply: Future[tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class StopRequest:
    reason: str


Incoming = (
    EncodedFrame
    | PcmChunk
    | AudioGap
    | Played
    | GestureIn
    | DeviceError
    | CameraRestarting
    | Fix
    | DockTime
    | Checkout
    | StopRequest
    | FileChecks
)


# What a person or the service manager asked for: the loop takes these
# ahead of draining the pre-record backlog
CONTROL = (GestureIn, StopRequest)
# What the devices stream: taken in batches at the loop's tick (Inbox)
MEDIA = (EncodedFrame, PcmChunk, AudioGap, Played)


_DELIVERED_BY = {EncodedFrame: "camera", PcmChunk: "microphone", AudioGap: "microphone"}


class Inbox:
    """The loop's one queue. Any thread puts; each item is stamped with its
    arrival on the unit's monotonic clock as it is put, so the loop can tell
    a device that went quiet from a loop that was slow to take its items.

    Items stay in arrival order (a stop takes the media that came before
    it), but the loop can see that a press is waiting (`control_waiting`)
    and put the pre-record backlog aside until it has taken it.

    Media (frames, sound blocks, what the speaker played) does not wake the
    loop: it waits for the loop's next tick and is taken in a batch. Each
    wake-up of a thread costs CPU (~0.2 ms on the bench machine), and one
    per frame and per sound block was about a quarter of the loop's CPU
    (issue 28). Everything else (a press, a fault, a fix, a dock's request)
    wakes it at once."""

    def __init__(self, now_us: Callable[[], int]) -> None:
        self._now_us = now_us
        self._q: queue.SimpleQueue[tuple[Incoming, int]] = queue.SimpleQueue()
        self._control: deque[None] = deque()  # one mark per control item queued
        self._wake = threading.Event()
        # when each push device last put something: what it gave and the loop
        # has not taken yet shows it is not silent (`Recorder._watch`)
        self.last_put: dict[str, int] = {}

    def put(self, item: Incoming) -> None:
        if isinstance(item, CONTROL):
            self._control.append(None)
        at = self._now_us()
        device = _DELIVERED_BY.get(type(item))
        if device is not None:
            self.last_put[device] = at
        self._q.put((item, at))
        if not isinstance(item, MEDIA):
            self._wake.set()

    def wait(self, timeout: float) -> None:
        """Until something other than media is put, or `timeout` s pass."""
        if self._wake.wait(timeout):
            self._wake.clear()  # before the caller drains: a later put wakes the next wait

    @property
    def control_waiting(self) -> bool:
        return bool(self._control)

    def _taken(self, got: tuple[Incoming, int]) -> tuple[Incoming, int]:
        if isinstance(got[0], CONTROL):
            self._control.popleft()
        return got

    def get_nowait(self) -> tuple[Incoming, int]:
        return self._taken(self._q.get_nowait())


# -- bringing a failed camera back ------------------------------------------------------


@dataclass(frozen=True)
class CameraRestart:
    """How the runtime brings back a camera that reported a fault (an encoder
    error in picamera2's thread): unit.toml `[devices.camera]`
    `restart_attempts` and `restart_backoff_max_s` (docs/HARDWARE.md)."""

    attempts: int = 5  # per recording; 0: never (video stays off until the process restarts)
    backoff_s: float = 1.0  # before the first restart after a fault, doubled after each failed one
    backoff_max_s: float = 8.0
    wait_s: float = 3.0  # a restarted camera must give a keyframe within this (GOP 1 s + start)

    @classmethod
    def from_config(cls, cfg: DeviceConfig) -> CameraRestart:
        return cls(
            attempts=int(cfg.opt("camera", "restart_attempts", cls.attempts)),
            backoff_max_s=float(cfg.opt("camera", "restart_backoff_max_s", cls.backoff_max_s)),
        )

    def delay_us(self, failed: int) -> int:
        """The wait before the next restart, `failed` restarts having failed since the fault."""
        return int(min(self.backoff_s * 2 ** min(failed, 20), self.backoff_max_s) * 1e6)


@dataclass
class CameraRecovery:
    """Where bringing the camera back stands; bookkeeping only (the Recorder
    stops and starts the camera, on a thread of its own).

    ok -> (fault) backoff -> (due) restarting -> (CameraRestarting) starting
    -> (a keyframe of the new start) ok; a failure in starting, or no
    keyframe by `due_us`, goes back to backoff, or to gave_up when the
    recording's restarts are used up."""

    policy: CameraRestart
    phase: str = "ok"  # ok | backoff | restarting | starting | gave_up
    gen: int = 0  # the camera start frames' errors are counted against; +1 per (re)start
    used: int = 0  # restarts tried in this recording
    failed: int = 0  # restarts failed since the fault (the backoff's exponent)
    due_us: int = 0  # backoff: when to restart; starting: when the restart has failed
    since_us: int = 0  # starting: frames stamped from here on are the new start's
    gap_from_us: int | None = None  # the last picture taken in before the fault
    why: str = ""  # the fault, then the last failure


class StoreSink:
    """capture's SegmentSink onto the sealed store."""

    def __init__(
        self,
        writer: SegmentWriter,
        stamp_at: Callable[[int], Stamp],
        retention: Callable[[], str],
        on_sealed: Callable[[Any], None],
        location: Callable[[int, int], dict[str, Any]],
    ) -> None:
        self.writer = writer
        self._stamp_at = stamp_at
        self._retention = retention
        self._on_sealed = on_sealed
        self._location = location

    def write(self, data: bytes | memoryview) -> None:
        self.writer.write(data)

    def close(self, info: SegmentInfo) -> Any:
        rec = self.writer.close(
            SegmentMeta(
                start=self._stamp_at(info.start_us),
                end=self._stamp_at(info.end_us),
                container=info.container,
                codecs=list(info.codecs),
                duration_us=info.duration_us,
                location=self._location(info.start_us, info.end_us),
                retention=self._retention(),
                extra={
                    "video_frames": info.video_frames,
                    "audio_samples": info.audio_samples,
                    "first_frame": info.first_frame,
                },
            )
        )
        self._on_sealed(rec)
        return rec


@dataclass
class Recorder:
    store: Store
    unitclock: UnitClock
    clock: Clock
    devices: Devices
    policy: m.Policy
    capture_config: CaptureConfig
    prompts: PromptBank
    log: Callable[[str], None] = print
    # the watermark's zone and language: the unit's (unit.toml [locale])
    face: Face = field(default_factory=Face)
    notify: Callable[[str], bool] = sd_notify
    machine: m.Machine = field(init=False)
    capture: Capture = field(init=False)
    indicators: m.Indicate | None = None
    retention: str = "supervision"
    # the last segments sealed (for logs and tests), and totals for the shift:
    # a list of every segment would grow for as long as the unit runs
    sealed: deque[Any] = field(default_factory=lambda: deque(maxlen=SEALED_KEPT))
    totals: SealedTotals = field(default_factory=lambda: SealedTotals())
    faulted: set[str] = field(default_factory=set)
    fault_reasons: dict[str, str] = field(default_factory=dict)  # the first, for the pre-use check
    audio_gaps: int = 0
    _gap_burst: dict[str, int] | None = None  # overflows not yet recorded (_gap)
    prompts_played: deque[str] = field(default_factory=lambda: deque(maxlen=SEALED_KEPT * 4))
    camera_restart: CameraRestart = field(default_factory=CameraRestart)
    # `bodycam run --media-log`: a line for every frame taken in while recording
    # ("in v PTS") and every packet written into a file ("out v|a PTS"), so a
    # power-cut test can measure what a cut lost (tests/test_kill_loss.py)
    media_log: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.machine = m.Machine(self.policy)
        self.capture = Capture(self._open_sink, self.capture_config, frame_time=self._frame_time)
        self.capture.listen(False)  # until a note is awaited (event())
        self.capture.meter_sound(self._note_may_come())
        if self.media_log is not None:
            media_log = self.media_log
            self.capture.segmenter.on_mux = lambda kind, t_us: media_log(f"out {kind} {t_us}")
        self.watermark = Watermark(
            self.store.serial, self.store.officer, self._frame_time, self.face
        )
        self.watermarked = False
        self.inbox = Inbox(self.now_us)
        self._files: list[tuple[int, str]] = []  # (start_us, file) of the recording's segments
        now = self.now_us()
        self._next_tick = now
        self._next_second = now + SECOND_US
        self._next_flush = now + FLUSH_US
        self.stalls = StallWatch()
        self.fixes = Fixes(fitted=self.devices.gps is not None)
        self._resume_seq: int | None = None  # the resume whose note is awaited
        self.stalls.started(now)
        self._stalled: set[str] = set()  # stalled after delivering: systemd should restart us
        self._reported_missing: set[str] = set()
        self.stop_reason: str | None = None
        self._prerecord_us = 0
        self.camera_recovery = CameraRecovery(self.camera_restart)
        self._restarter: threading.Thread | None = None  # the camera's stop/start, off the loop
        self._video_pts: int | None = None  # the last picture taken in
        self._audio_pts: int | None = None  # the last sound taken in
        # what the devices delivered, for the pre-use check beside the recorder
        self.delivered = Delivered(keyframes=0, frames=0, chunks=0)

    def now_us(self) -> int:
        return self.clock.monotonic_ns() // 1000

    # -- sinks ----------------------------------------------------------------------

    def _stamp_at(self, mono_us: int) -> Stamp:
        now = self.unitclock.stamp()
        return Stamp(
            mono_us, now.wall_us + (mono_us - now.mono_us), now.clock_state, now.clock_source
        )

    def _frame_time(self, mono_us: int) -> FrameTime:
        """A picture's time for its SEI and watermark (from any thread)."""
        s = self._stamp_at(mono_us)
        return FrameTime(s.wall_us, s.clock_state, s.clock_source)

    def _open_sink(self, index: int, start_us: int) -> StoreSink:
        writer = self.store.open_segment("ts", stamp=self._stamp_at(start_us))
        self._files.append((start_us, str(writer.name)))
        return StoreSink(
            writer, self._stamp_at, lambda: self.retention, self._sealed, self._location
        )

    def _location(self, start_us: int, end_us: int) -> dict[str, Any]:
        """A media record's place: its last fix, or why there is none."""
        return self.fixes.location(start_us, end_us, failed="gps" in self.faulted)

    def _sealed(self, rec: Any) -> None:
        self.sealed.append(rec)
        self.totals.add(rec.body)
        self.log(
            f"sealed {rec.body['file']} ({rec.body['video_frames']} frames, "
            f"{rec.body['ct_len']} bytes)"
        )

    # -- starting and stopping ------------------------------------------------------------

    def start(self) -> None:
        """Start the devices and tell the machine how the unit came up."""
        d = self.devices
        q = self.inbox.put
        # every prompt in memory before any device delivers: none is read from
        # the card (or rendered) on the loop when it is due, and the loop is
        # not held up once frames come
        self.prompts.preload()
        for device, reason in d.absent.items():
            self._fault(device, reason)
        if d.camera is None and "camera" not in d.absent:
            self._fault("camera", "no camera configured")
        if d.microphone is None and "microphone" not in d.absent:
            self._fault("microphone", "no microphone configured")
        self.capture.set_media(
            video=d.camera is not None and "camera" not in self.faulted,
            audio=d.microphone is not None,
        )
        if d.rtc is not None and self.unitclock.state == "unverified":
            self._clock_from_rtc(d.rtc)
        self.event(m.ClockStatus(self.unitclock.state, self.unitclock.source, self.now_us()))
        self.event(m.Storage(*self._space(), self.now_us()))
        # A device that opened but fails as it starts is a fault like one that
        # did not open: recorded, and the unit records without it. Whatever the
        # library raises: an exit here would be a restart loop under systemd.
        try:
            d.buttons.start(lambda g, line, at: q(GestureIn(g, line, at)))
        except Exception as exc:
            self._fault("gpio", f"buttons did not start: {type(exc).__name__}: {exc}")
        try:
            d.speaker.start(q)  # what it plays is the echo reference of the spoken note
        except Exception as exc:
            self._fault("speaker", f"did not start: {type(exc).__name__}: {exc}")
        if d.camera is not None:
            self.watermarked = d.camera.overlay(
                self.watermark.burn, lambda reason: q(DeviceError("watermark", reason))
            )
            if not self.watermarked:
                self._append(
                    "fault",
                    {
                        "what": "watermark",
                        "reason": f"the {d.camera.name} "
                        "camera gives no pictures to burn the watermark into",
                    },
                )
            try:
                d.camera.start(q, lambda reason: q(DeviceError("camera", reason)))
            except Exception as exc:
                self._camera_error(DeviceError("camera", f"did not start: {exc}"))
        if d.microphone is not None:
            try:
                d.microphone.start(q, q, lambda reason: q(DeviceError("microphone", reason)))
            except Exception as exc:
                self._fault("microphone", f"did not start: {exc}")
        if d.gps is not None:
            try:
                d.gps.start(q, lambda reason: q(DeviceError("gps", reason)))
            except Exception as exc:
                self._fault("gps", f"did not start: {exc}")
        self.stalls.started(self.now_us())
        self.show()

    def show(self) -> None:
        ind = m._indicate(self.machine.state)
        self.indicators = ind
        self.devices.indicators.show(lights_for(ind))

    def request_stop(self, reason: str) -> None:
        """From any thread (a signal handler): stop at the next turn of the loop."""
        self.inbox.put(StopRequest(reason))

    def finish(self) -> None:
        """Seal and stop: what SIGTERM and the end of a scenario come to."""
        reason = self.stop_reason or "end"
        self.flush_stalls()
        self.event(m.Shutdown(reason, self.now_us()))
        self.capture.stop()  # whatever is still open, a paused file still draining too
        if self._restarter is not None:  # the devices are closed next: not under its feet
            self._restarter.join(RESTARTER_JOIN_S)

    def flush_stalls(self) -> None:
        """Record every stall still open, and any device silent until now: the
        recorder is stopping (called before the stop is recorded)."""
        for stall in self.stalls.flush(self.now_us()):
            self._record_stall(stall)
        self._record_gaps()

    # -- audio overflows: one record per burst -----------------------------------------------
    #
    # A starved machine overflows the microphone's buffer many times a second.
    # A record per overflow (signed, synced) costs the loop more time and so
    # causes more: found on the emulated unit, where 8 a second flooded the
    # chain and a button press waited minutes. Overflows less than a second
    # apart are one `audio_gap` record, written a second after the last (or
    # every 10 s while they go on), with their count and the samples lost.

    def _gap(self, item: AudioGap, at: int) -> None:
        b = self._gap_burst
        if b is not None and (
            item.at_us - b["until_us"] > GAP_MERGE_US or item.at_us - b["at_us"] >= GAP_RECORD_US
        ):
            self._record_gaps()
            b = None
        if b is None:
            self._gap_burst = {"at_us": item.at_us, "until_us": item.at_us, "samples": 0,
                               "overflows": 0, "seen_us": at}  # fmt: skip
            b = self._gap_burst
        b["until_us"] = max(b["until_us"], item.at_us)
        b["samples"] += item.samples
        b["overflows"] += 1
        b["seen_us"] = at

    def _record_gaps(self, now: int | None = None) -> None:
        """The burst so far as one record; with `now`, only once it is over."""
        b = self._gap_burst
        if b is None or (now is not None and now - b["seen_us"] <= GAP_MERGE_US):
            return
        self._gap_burst = None
        self._append(
            "fault",
            {
                "what": "audio_gap",
                "at_us": b["at_us"],
                "until_us": b["until_us"],
                "samples": b["samples"],
                "overflows": b["overflows"],
                "gaps": self.audio_gaps,
                "reason": "microphone input overflow: samples lost, filled with silence in place",
            },
        )

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Live: handle events as they come until a stop request (or `stop` is set)."""
        self.notify("READY=1")
        behind = False
        while self.stop_reason is None and not (stop is not None and stop.is_set()):
            # media waits for the tick; work left over (a turn's limit, the
            # pre-record backlog) goes on at once
            wait = 0.0 if behind else max(0.0, (self._next_tick - self.now_us()) / 1e6)
            self.inbox.wait(wait)
            behind = self.pump()
        self.notify("STOPPING=1")
        self.log(f"stopping: {self.stop_reason or 'stopped'}")

    def pump(self) -> bool:
        """Handle what is queued (for at most a turn), a share of the
        pre-record backlog, then whatever timers are due. True if work is
        left for the next turn."""
        turn_end = self.now_us() + TURN_US
        self.stalls.turn(self.now_us())
        left = False
        # the turn's records (a file ended at its length or by the backlog, a
        # fault, a stall, a gap, a clock event found by a timer) go to the
        # store's committer in one batch: the loop never waits on a seal's or a
        # record's fsyncs (a dock's answer still waits for them)
        with self.store.batch(wait=False):
            while self.stop_reason is None:
                if self.now_us() >= turn_end:
                    left = True
                    break
                try:
                    item, at = self.inbox.get_nowait()
                except queue.Empty:
                    break
                self._handle(item, at)
            # a press waiting behind the backlog is taken at the next turn, at once
            while (
                self.capture.backlog and self.now_us() < turn_end and not self.inbox.control_waiting
            ):
                self.capture.drain(DRAIN_ITEMS)
            self._timers()
        return left or bool(self.capture.backlog)

    def _timers(self) -> None:
        """Whatever of the tick, the segment's sync and the second is due."""
        now = self.now_us()
        # a stop inside this turn (SIGSTOP, a frozen VM) is the recorder's own
        # stall too: the devices' silence is not judged across it
        self.stalls.turn(now)
        if now >= self._next_tick:
            self._next_tick = max(self._next_tick + TICK_US, now - TICK_US)
            self._tick(now)
        if now >= self._next_flush:
            self._next_flush = max(self._next_flush + FLUSH_US, now)
            self.store.sync_open_segments()
        if now >= self._next_second:
            self._next_second = max(self._next_second + SECOND_US, now)
            self._each_second(now)

    def _handle(self, item: Incoming, at: int) -> None:
        """One item off the queue; `at`: when it was put there."""
        if isinstance(item, EncodedFrame):
            d = self.delivered
            self.delivered = Delivered(d.keyframes + item.keyframe, d.frames + 1, d.chunks)
            if self._stall_check("camera", at, item.pts_us, keyframe=item.keyframe):
                return  # dated inside a stall of the camera: not recorded as if continuous
            if "camera" not in self.faulted:
                self._video_pts = item.pts_us
                self.capture.push_video(item)
                if self.media_log is not None and self.capture.recording:
                    self.media_log(f"in v {item.pts_us}")
            elif self._is_new_start_keyframe(item):
                self._camera_back(item)
            elif "camera" in self._stalled:  # silent, not restarted: back by itself
                if item.keyframe:
                    self._camera_back(item, by_itself=True)
                else:
                    cam = self.devices.camera
                    if cam is not None:
                        cam.request_keyframe()  # the picture resumes at the next keyframe
        elif isinstance(item, PcmChunk):
            d = self.delivered
            self.delivered = Delivered(d.keyframes, d.frames, d.chunks + 1)
            if self._stall_check("microphone", at, item.pts_us, samples=item.samples):
                return
            if "microphone" in self._stalled:  # silent, not restarted: back by itself
                self._microphone_back(item)
            if "microphone" not in self.faulted:
                self._audio_pts = item.pts_us
                self.capture.push_audio(item)
        elif isinstance(item, AudioGap):
            self._stall_check("microphone", at, None)
            if self.stalls.lost("microphone", item.at_us, item.samples):
                return  # lost while the microphone stalled: the stall's record counts it
            self.audio_gaps += 1  # capture fills the stretch with silence in place
            self._gap(item, at)
        elif isinstance(item, Played):
            self.capture.played(item.pcm, item.at_us)  # the unit's own voice is no note
        elif isinstance(item, GestureIn):
            self._gesture(item)
        elif isinstance(item, DeviceError) and item.device == "watermark":
            self.watermarked = False  # the picture goes on without it; its SEI still has the time
            self._append("fault", {"what": "watermark", "reason": item.reason})
        elif isinstance(item, DeviceError) and item.device == "camera":
            self._camera_error(item)
        elif isinstance(item, DeviceError):
            self._fault(item.device, item.reason)
        elif isinstance(item, CameraRestarting):
            self._camera_restarting(item)
        elif isinstance(item, Fix):
            self._fix(item)
        elif isinstance(item, DockTime):
            self._answer(item.reply, self.set_clock(item.t_us, "dock", dock=item.dock))
        elif isinstance(item, Checkout):
            self._answer(item.reply, self._checkout(item.assignment, item.dock))
        elif isinstance(item, StopRequest):
            self.stop_reason = item.reason
        elif isinstance(item, FileChecks):
            self._pre_use_done(item)

    def _answer(self, reply: Future[Any], answer: Any) -> None:
        """Answer a dock only once every record so far is durable: the dock is
        told only what is on record, even if a record went to the committer."""
        self.store.wait_durable()
        reply.set_result(answer)

    def _pre_use_done(self, files: FileChecks) -> None:
        """The pre-use check beside the recorder (firmware/preuse.py): the
        file checks' results with the devices judged as they delivered, in
        one `selftest` record, as `bodycam selftest` writes it."""
        d = self.devices
        results = list(files.results)
        results.append(selftest.check_free_space(self.store.root.parent, self._space()[0]))
        if d.battery is not None:
            try:
                results.append(selftest.check_battery(d.battery.read().percent))
            except (OSError, DeviceFault) as exc:
                results.append(selftest.CheckResult("battery", False, f"unreadable: {exc}"))
        elif "battery" in d.absent:
            results.append(selftest.CheckResult("battery", False, d.absent["battery"]))
        results += device_checks(
            self.delivered, files.listened_s, d.camera is not None, d.microphone is not None,
            {**self.fault_reasons, **d.absent},
        )  # fmt: skip
        if isinstance(d.gps, SerialGps):
            p = d.gps.parser
            results.append(selftest.check_gps(p.good, p.garbage + p.bad_checksum))
        elif isinstance(d.gps, SimGps):  # fixes come when a driver gives them: nothing to hear
            results.append(selftest.not_applicable("gps sentences", "simulated GPS"))
        elif "gps" in d.absent:
            results.append(selftest.CheckResult("gps sentences", False, d.absent["gps"]))
        else:
            results.append(selftest.check_gps(0, 0))  # none configured
        for name in ("gpio", "speaker", "rtc"):  # opened at start, or a FAIL naming why not
            if name in d.absent:
                results.append(selftest.CheckResult(name, False, d.absent[name]))
        results.append(selftest.check_clock(self.unitclock.state))
        for r in results:
            self.log(f"pre-use {r.line()}")
        self._append(
            "selftest",
            {
                "devices": d.backends(),
                "checks": {r.name: r.recorded() for r in results},
                "beside": "recorder",
            },
        )

    def _gesture(self, g: GestureIn) -> None:
        at = self.now_us()
        if g.line == "tamper":
            if g.gesture == "active":
                self.event(m.Fault("tamper", "tamper switch opened", at))
            return
        if g.line == "trigger":
            if g.gesture == "active":
                self.event(m.Trigger("trigger", at))
            return
        gesture: m.Event
        if g.gesture == "press":
            gesture = m.Press(g.line, at)
        elif g.gesture == "hold":
            gesture = m.Hold(g.line, at)
        elif g.gesture == "double":
            gesture = m.DoublePress(g.line, at)
        else:
            return
        self.event(m.Tick(at, self._speech(at)))  # judge a pending note on what was heard
        self.event(gesture)

    def _tick(self, now: int) -> None:
        self.devices.buttons.poll()
        self._watch(now)
        self._camera_timers(now)
        for stall in self.stalls.due(now):
            self._record_stall(stall)
        self.event(m.Tick(now, self._speech(now)))

    # -- stalls: the loop and the devices against the monotonic clock ----------------------
    #
    # A gap in a device's deliveries (or the loop's turns) longer than STALL_US
    # is a stall (firmware/stalls.py). Media it delivers afterwards dated
    # inside the gap is refused and counted; the open file ends where the gap
    # began and the recording goes on in a new file from the next keyframe,
    # so no file spans the hole. One `stall` record tells the span.

    def _stall_check(
        self, device: str, at: int, pts_us: int | None, *, keyframe: bool = False, samples: int = 0
    ) -> bool:
        """Note an arrival of `device`; True if the item is dated inside a
        stall of it (refuse it)."""
        # a device faulted by its own error is being restarted: that gap is the fault's
        judged = device not in self.faulted or device in self._stalled
        if self.stalls.arrived(device, at, judged=judged) and device not in self.faulted:
            cut = self.capture.cut()
            self.log(
                f"stall: nothing came from the {device} for over {STALL_US / 1e6:g} s"
                + ("; the file ends before it, the recording goes on in the next" if cut else "")
            )
            self._want_keyframe()
        if pts_us is None or not self.stalls.back_dated(device, pts_us, samples):
            return False
        if keyframe:  # the picture video was to resume with: ask for another
            self._want_keyframe()
        return True

    def _want_keyframe(self) -> None:
        cam = self.devices.camera
        if cam is not None and "camera" not in self.faulted:
            cam.request_keyframe()

    def _record_stall(self, stall: Stall) -> None:
        body = stall.body()
        self._append("stall", body)
        self.log(f"stall recorded: {body['reason']}")

    def _watch(self, now: int) -> None:
        """A push device that goes quiet raises nothing: notice the silence."""
        for name in ("camera", "microphone"):
            if getattr(self.devices, name) is None or name in self.faulted:
                continue
            quiet = self.stalls.quiet_us(name, now)
            put = self.inbox.last_put.get(name)
            if put is not None:  # a loop behind its queue is not a silent device
                quiet = min(quiet, now - put)
            if quiet > STALL_US:
                self._stalled.add(name)
                if name == "camera":
                    self.camera_recovery.gap_from_us = self._video_pts
                self._fault(
                    name,
                    f"no {'frame' if name == 'camera' else 'audio'} for {quiet / 1e6:.1f} s",
                    silent=True,
                )

    def _each_second(self, now: int) -> None:
        self._record_gaps(now)
        self._watch_clock()
        self.store.restore_reserve()  # a no-op while it exists
        free, total = self._space()
        self.event(m.Storage(free, total, now))
        battery = self.devices.battery
        if battery is not None:
            try:
                r = battery.read()
            except (OSError, DeviceFault) as exc:
                self._fault("battery", str(exc))
            else:
                self.event(m.Battery(r.percent, r.minutes_left, now))
        # tied to work: the loop turned, and no device that was delivering has stalled
        if not self._stalled:
            self.notify("WATCHDOG=1")

    def _space(self) -> tuple[int, int]:
        s = self.devices.storage.space()
        return s.free_bytes, s.total_bytes

    def _speech(self, at: int) -> float:
        note = self.machine.state.note
        return self.capture.speech_seconds(note.since_us, at) if note else 0.0

    # -- events in, actions out ------------------------------------------------------

    def event(self, event: m.Event) -> None:
        if not isinstance(event, (m.Tick, m.Storage, m.Battery)):
            self.log(f"event {type(event).__name__} {_fields(event)}")
        # one event's records (a stop seals its file, then `segment`, the
        # note's verdict and `record_stop`) share one fsync and one key
        # update, written by the store's committer thread so a press is not
        # kept behind a seal's fsyncs (live and on virtual time alike: every
        # read of the chain, and every answer to a dock, waits for it)
        with self.store.batch(wait=False):
            for action in self.machine.handle(event):
                self._do(action)
        self.capture.listen(self.machine.state.note is not None)
        self.capture.meter_sound(self._note_may_come())

    def _note_may_come(self) -> bool:
        """Whether the voice detector must hear the sound: a note window is
        open, or may open at the next press with its context (a pause's, a
        start that is a resume's). Idle, nothing would read what it made."""
        s = self.machine.state
        return s.mode != "idle" or s.needs_note or s.note is not None

    def _do(self, a: m.Action) -> None:
        now = self.now_us()
        if isinstance(a, m.StartCapture):
            self._files = []
            if self.capture.segmenter.signer is None:
                self._new_recording_key()
                self._new_camera_budget(now)
            # a resume starts at the next keyframe: asked for now, not up to a
            # GOP later, and before a paused file still taking the pre-record
            # is finished (start() does that first), so the picture that opens
            # the resumed file is the one taken at the press, not after the seal
            if not a.prerecord:
                self._want_keyframe()  # not a faulted camera: its restart thread has it
            pre = self.capture.start(now, prerecord=a.prerecord)
            self._prerecord_us = pre
            self.log(f"capture started ({a.cause}), pre-record {pre / 1e6:.1f} s")
        elif isinstance(a, m.StopCapture):
            # a pause's file may take the rest of the pre-record after this
            # event (pump drains it, then seals): a press after a pause is
            # taken at once; a stop's file is sealed before `record_stop`
            self.capture.stop(wait=not a.pause)
            self.log(f"capture stopped ({a.cause})")
        elif isinstance(a, m.Record):
            body = dict(a.body)
            if a.type == "resume_note":
                body.update(self._where(int(body["window_from_us"])))
                # the resume it judges, by the chain's own link: readers join
                # the two by sequence, never by equal times (they differ by ms)
                body["resume"] = self._resume_seq
            if a.type == "mark":
                self.retention = "evidence"
            if a.type == "record_start":
                body["prerecord_us"] = self._prerecord_us
                body["prerecord_audio"] = self.capture_config.prerecord_audio
            rec = self._append(a.type, body)
            if a.type == "resume":
                self._resume_seq = rec.seq
            elif a.type in ("record_start", "record_stop", "pause"):
                self._resume_seq = None
            if a.type == "record_stop":
                # the recording key dies with its recording: nothing on the unit
                # can sign another picture as part of it afterwards
                self.capture.segmenter.signer = None
        elif isinstance(a, m.Prompt):
            self._prompt(a.name)
        elif isinstance(a, m.Hush):
            if "speaker" not in self.faulted:
                self.devices.speaker.hush()
        elif isinstance(a, m.Indicate):
            self.indicators = a
            self.devices.indicators.show(lights_for(a))
        elif isinstance(a, m.TakeStill):
            self._still()

    def _new_recording_key(self) -> None:
        """A key for this recording's in-stream signatures (capture/gopsign.py),
        kept only in memory; its public half is sealed in the chain first, so
        an excerpt's proof roots in a signed, MAC'd record."""
        key = Ed25519PrivateKey.generate()
        public = key.public_key()
        self._append(
            "recording_key",
            {"public_key": b64(gopsign.raw_key(public)), "key": fingerprint(public)},
        )
        self.capture.segmenter.signer = gopsign.GopSigner(key, self.store.serial)

    def _append(self, type_: str, body: dict[str, Any]) -> Any:
        rec = self.store.append(type_, body, self.unitclock.stamp())
        self.log(f"record {rec.seq} {type_} {_brief(body)}")
        return rec

    def _where(self, at_us: int) -> dict[str, Any]:
        """Which file of the recording holds media time `at_us`, and where."""
        if not self._files:
            return {"file": None, "offset_us": None}
        start, name = next(((s, n) for s, n in reversed(self._files) if s <= at_us), self._files[0])
        return {"file": name, "offset_us": max(0, at_us - start)}

    def _prompt(self, name: str) -> None:
        buzz, vibrate = ALERTS.get(name, (None, None))
        if buzz is not None:
            self.devices.indicators.buzz(buzz)
        if vibrate is not None:
            self.devices.indicators.vibrate(vibrate)
        pcm = self.prompts.pcm(name)
        if name in self.prompts.missing and name not in self._reported_missing:
            self._reported_missing.add(name)
            self._fault(
                "speaker", f"prompt {name!r} is not in the shipped set; a tone was played instead"
            )
        if "speaker" not in self.faulted:
            try:
                self.devices.speaker.play(name, pcm)
            except DeviceFault as exc:
                self._fault("speaker", str(exc))
        self.prompts_played.append(name)
        self.log(f"prompt {name}")

    def _still(self) -> None:
        cam = self.devices.camera
        if cam is None or "camera" in self.faulted:
            self.log("still: no camera")
            return
        start = self.unitclock.stamp()
        try:
            jpeg = cam.still()
        except (DeviceFault, OSError, RuntimeError) as exc:
            # recorded, but the video goes on: a dead camera is found by the
            # frame watchdog, not by one still that did not come
            self.log(f"still failed: {exc}")
            self._append("fault", {"what": "still", "reason": str(exc)})
            return
        loc = self._location(start.mono_us, start.mono_us)
        try:
            jpeg = with_exif(
                jpeg,
                StillInfo(
                    start.wall_us,
                    start.clock_state,
                    start.clock_source,
                    self.store.serial,
                    self.store.officer,
                    loc.get("lat_e7"),
                    loc.get("lon_e7"),
                ),
            )
        except ValueError as exc:  # kept as the camera gave it: the picture is the evidence
            self._append("fault", {"what": "still_exif", "reason": str(exc)})
        w = self.store.open_segment("jpg", stamp=start)
        w.write(jpeg)
        extra: dict[str, Any] = {}
        meta = getattr(cam, "last_still", None)  # the Pi camera says where the picture came from
        if meta is not None:
            extra["still"] = {"source": meta.source, "width": meta.width, "height": meta.height}
        rec = w.close(
            SegmentMeta(
                start=start,
                end=self.unitclock.stamp(),
                container="jpeg",
                codecs=["mjpeg"],
                location=loc,
                retention=self.retention,
                extra=extra,
            )
        )
        self.log(f"still {rec.body['file']}")

    def _fault(self, device: str, reason: str, silent: bool = False) -> None:
        if device in self.faulted:
            return
        self.faulted.add(device)
        self.fault_reasons[device] = reason
        if device == "camera":
            self.capture.set_media(video=False)
        elif device == "microphone":
            self.capture.set_media(audio=False)
        self.event(m.Fault(device, reason, self.now_us(), silent))

    # -- the camera: faults it reports, restarts ---------------------------------------------
    #
    # A fault the camera reports (an encoder error in picamera2's thread) is
    # recorded as before, then the camera is stopped and started again after
    # a backoff, on a thread of its own (picamera2's stop can take seconds):
    # at most `attempts` restarts per recording. Until a keyframe of the new
    # start arrives nothing of the camera's is recorded, so the video's gap
    # is the real one and it starts again at a keyframe, at the picture's own
    # time; sound goes on throughout. A camera that goes silent (the frame
    # watchdog's "no frame") is not restarted here: picamera2's stop blocks
    # on it. If it delivers again by itself it is taken back (recovered,
    # restarts 0); if not, the systemd watchdog restarts the recorder.

    def _camera_error(self, item: DeviceError) -> None:
        c = self.camera_recovery
        if item.gen != c.gen:
            self.log(f"camera (an earlier start, ignored): {item.reason}")
            return
        if c.phase in ("restarting", "starting"):
            self._restart_failed(item.reason)
            return
        if "camera" in self.faulted:
            self.log(f"camera (already faulted): {item.reason}")
            return
        c.gap_from_us = self._video_pts
        c.failed = 0
        c.why = item.reason
        self._fault("camera", item.reason)
        self._next_restart(self.now_us())

    def _next_restart(self, now: int) -> None:
        c = self.camera_recovery
        if self.devices.camera is None or c.policy.attempts == 0:
            return  # restarts switched off: sound only until the process restarts
        if c.used >= c.policy.attempts:
            self._give_up()
            return
        c.phase = "backoff"
        c.due_us = now + c.policy.delay_us(c.failed)
        self.log(
            f"camera: restart {c.used + 1} of {c.policy.attempts} in {(c.due_us - now) / 1e6:g} s"
        )

    def _camera_timers(self, now: int) -> None:
        c = self.camera_recovery
        if c.phase == "backoff" and now >= c.due_us:
            self._restart_camera()
        elif c.phase == "starting" and now >= c.due_us:
            self._restart_failed(f"no keyframe within {c.policy.wait_s:g} s of restart {c.used}")

    def _restart_camera(self) -> None:
        c = self.camera_recovery
        c.used += 1
        c.gen += 1
        c.phase = "restarting"
        self.log(f"camera: restart {c.used} of {c.policy.attempts}")
        self._camera_worker(c.gen, start=True)

    def _camera_worker(self, gen: int, *, start: bool) -> None:
        """Stop the camera (and start it again) on a thread of its own, after
        any earlier such thread: the loop thread never waits on picamera2."""
        cam, prev, q = self.devices.camera, self._restarter, self.inbox.put
        if cam is None:
            return

        def work() -> None:
            if prev is not None:
                prev.join(RESTARTER_JOIN_S)
                if prev.is_alive():
                    q(CameraRestarting(gen, self.now_us()))
                    q(DeviceError("camera", "the previous restart has not returned", gen))
                    return
            try:
                cam.stop()
            except Exception as exc:
                self.log(f"camera: stop before the restart: {exc!r}")
            if not start:
                return
            q(CameraRestarting(gen, self.now_us()))  # before any frame of the new start
            try:
                cam.start(q, lambda reason: q(DeviceError("camera", reason, gen)))
            except Exception as exc:
                q(DeviceError("camera", f"restart failed: {exc}", gen))

        self._restarter = threading.Thread(target=work, name="camera-restart", daemon=True)
        self._restarter.start()

    def _camera_restarting(self, item: CameraRestarting) -> None:
        c = self.camera_recovery
        if item.gen == c.gen and c.phase == "restarting":
            c.phase = "starting"
            c.since_us = item.at_us
            c.due_us = self.now_us() + int(c.policy.wait_s * 1e6)

    def _is_new_start_keyframe(self, frame: EncodedFrame) -> bool:
        """The picture video resumes with: a keyframe of the restarted camera
        (an earlier start's frames, still queued or flushed, are older)."""
        c = self.camera_recovery
        return c.phase == "starting" and frame.keyframe and frame.pts_us >= c.since_us

    def _restart_failed(self, why: str) -> None:
        c = self.camera_recovery
        c.failed += 1
        c.why = why
        self.log(f"camera: restart {c.used} failed: {why}")
        self._next_restart(self.now_us())

    def _give_up(self) -> None:
        c = self.camera_recovery
        c.phase = "gave_up"
        c.gen += 1  # whatever the last start still reports is stale
        self._append(
            "fault",
            {
                "what": "camera",
                "reason": f"gave up: video did not come back after {c.used} restarts "
                f"in this recording (last: {c.why}); sound only until the next recording",
                "restarts": c.used,
            },
        )
        self._camera_worker(c.gen, start=False)  # a broken encoder is left stopped

    def _camera_back(self, frame: EncodedFrame, by_itself: bool = False) -> None:
        """Frames flow again: record it, and let the picture back in from this
        keyframe. `by_itself`: a camera faulted for its silence (never
        restarted) delivers again, so the watchdog is fed again too."""
        c = self.camera_recovery
        c.phase = "ok"
        c.failed = 0
        self.faulted.discard("camera")
        self._stalled.discard("camera")
        self.capture.set_media(video=True)
        seg = self.capture.segmenter
        current = seg.current
        if current is not None and "h264" not in current.codecs:
            # the open file was begun during the gap, without a picture track:
            # the video starts the next file, at this keyframe
            seg.rollover_at_next_keyframe()
        gap = None if c.gap_from_us is None else frame.pts_us - c.gap_from_us
        said = (
            "video resumed by itself after a silence"
            if by_itself
            else f"video resumed after restart {c.used} of {c.policy.attempts}"
        )
        self._append(
            "recovered",
            {
                "what": "camera",
                "reason": said,
                "restarts": c.used,
                "gap_from_us": c.gap_from_us,
                "gap_to_us": frame.pts_us,
                "gap_us": gap,
            },
        )
        self.event(m.Restored("camera", self.now_us()))
        self._video_pts = frame.pts_us
        self.capture.push_video(frame)

    def _microphone_back(self, chunk: PcmChunk) -> None:
        """A microphone faulted for its silence delivers again (a slow start,
        a stalled driver that woke): recorded, and its sound taken again from
        this chunk; the stall record tells the span it was silent."""
        self._stalled.discard("microphone")
        self.faulted.discard("microphone")
        seg = self.capture.segmenter
        current = seg.current
        self.capture.set_media(audio=True)
        if current is not None and "aac" not in current.codecs:
            seg.rollover_at_next_keyframe()  # the open file has no sound track: the next has
        last = self._audio_pts
        self._append(
            "recovered",
            {
                "what": "microphone",
                "reason": "audio resumed by itself after a silence",
                "restarts": 0,
                "gap_from_us": last,
                "gap_to_us": chunk.pts_us,
                "gap_us": None if last is None else chunk.pts_us - last,
            },
        )
        self.event(m.Restored("microphone", self.now_us()))

    def _new_camera_budget(self, now: int) -> None:
        """A new recording: its own restarts; a camera given up on is tried again."""
        c = self.camera_recovery
        c.used = 0
        if c.phase == "gave_up":
            c.failed = 0
            self._next_restart(now)

    # -- time ---------------------------------------------------------------------------------

    def _fix(self, fix: Fix) -> None:
        position = fix.location()
        if position is not None:
            mono = fix.read_mono_us if fix.read_mono_us is not None else self.now_us()
            utc = int(fix.utc.timestamp() * 1_000_000) if fix.utc is not None else None
            self.fixes.took(position, mono, utc)
        if fix.utc is not None:
            true_us = int(fix.utc.timestamp() * 1_000_000)
            if fix.read_mono_us is not None:  # it waited in the queue: its time as of now
                true_us += max(0, self.now_us() - fix.read_mono_us)
            self.set_clock(true_us, "gps")

    def _clock_from_rtc(self, rtc: Rtc) -> None:
        """Power-on: the RTC's time, vouched for only as far as the chain's last
        authenticated sync allows (docs/STATES.md, "The clock")."""
        try:
            rtc_us = rtc.read_us()
        except RtcInvalid as exc:
            body = self.unitclock.refuse_rtc(str(exc))
        except OSError as exc:
            body = self.unitclock.refuse_rtc(f"the RTC could not be read: {exc}")
        else:
            if rtc_us is None:
                return
            last_sync, floor = chain_clock_facts(self.store)
            body = self.unitclock.adopt_rtc(rtc_us, last_sync, max(floor, BUILD_UTC_US))
        self._append("clock", body)
        self.log(f"clock from rtc: {body['state']} ({body['reason']})")

    def _watch_clock(self) -> None:
        for body in self.unitclock.watch():
            self._append("clock", body)
            self.log(f"clock {body['event']}: {body['reason']}")
            self.event(m.ClockStatus(self.unitclock.state, self.unitclock.source, self.now_us()))

    def dock_time(self, t_us: int, dock: str) -> dict[str, Any]:
        """From the export service's thread: set the clock from the dock on the
        loop thread (record, RTC, the machine's clock state) and answer."""
        reply: Future[dict[str, Any]] = Future()
        self.inbox.put(DockTime(t_us, dock, reply))
        try:
            return reply.result(timeout=DOCK_TIME_WAIT_S)
        except TimeoutError:
            return {"error": "the recorder did not take the time (busy); try again"}

    def assign(self, a: Assignment, dock: str) -> tuple[int, dict[str, Any]]:
        """From the export service's thread: a verified check-out, done on the
        loop thread (the chain's officer and the watermark change together)."""
        reply: Future[tuple[int, dict[str, Any]]] = Future()
        self.inbox.put(Checkout(a, dock, reply))
        try:
            return reply.result(timeout=DOCK_TIME_WAIT_S)
        except TimeoutError:
            return 503, {"error": "the recorder did not take the assignment (busy); try again"}

    def _checkout(self, a: Assignment, dock: str) -> tuple[int, dict[str, Any]]:
        if self.machine.state.mode != "idle":
            why = "the unit is recording or paused: stop the recording before handing it over"
            self._append("fault", {"what": "assignment", "dock": dock, "reason": why})
            return 409, {"error": why}
        rec = self.store.set_officer(a.officer, assignment_body(a, dock))
        self.watermark.officer = a.officer  # the next frame burns the new name
        self.log(f"record {rec.seq} officer: checked out to {a.officer} (approved by {a.approver})")
        return 200, {"seq": rec.seq, "officer": a.officer}

    def set_clock(self, true_us: int, source: str, **extra: Any) -> dict[str, Any]:
        """An authenticated time (dock, GPS): step to it, record it, write the RTC.
        Returns what was done (the dock is answered with it)."""
        before = self.unitclock.stamp()
        reason = outside_window(source, true_us)
        if reason is not None:
            self._append(
                "clock",
                {
                    "event": "refused",
                    "source": source,
                    "offered_us": as_offered(true_us),
                    "state": before.clock_state,
                    "reason": reason,
                    **extra,
                },
            )
            self.log(f"clock: {reason}")
            return {"error": reason, "state": before.clock_state}
        last = self.unitclock.synced_wall_us
        if (
            before.clock_state == "synced"
            and abs(true_us - before.wall_us) <= CLOCK_TOLERANCE_US
            and last is not None
            and true_us - last < RECONFIRM_US
        ):
            return {
                "state": "synced",
                "source": before.clock_source,
                "step_us": 0,
                "recorded": False,
                "offset_us": true_us - before.wall_us,
            }
        body = self.unitclock.set_from(true_us, source)
        self._append("clock", {**body, **extra})
        self.log(f"clock stepped by {int(body['step_us']) / 1e6:+.3f} s from {source}")
        rtc = self.devices.rtc
        if rtc is not None and source != "rtc":
            try:
                rtc.write_us(true_us)
            except OSError as exc:
                self.log(f"rtc not written: {exc}")
        self.event(m.ClockStatus("synced", source, self.now_us()))
        return body


def chain_clock_facts(store: Store) -> tuple[int | None, int]:
    """(unit time of the last dock/GPS sync, time of the last record of an
    earlier power-on) from the chain: what the RTC is judged against."""
    boot = store.head.boot
    last_sync, floor = None, 0
    for r in reversed(store.records()):
        if r.boot < boot and not floor:
            floor = r.stamp.wall_us
        if r.type == "clock" and r.body.get("source") in AUTHENTICATED and last_sync is None:
            last_sync = int(r.body["after_us"])
        if floor and last_sync is not None:
            break
    return last_sync, floor


def _fields(event: object) -> str:
    return " ".join(f"{k}={v}" for k, v in vars(event).items() if k != "at_us")


def _brief(body: dict[str, Any]) -> str:
    keep = {
        k: v
        for k, v in body.items()
        if k in ("cause", "reason", "given", "speech_s", "what", "flag", "percent")
    }
    return " ".join(f"{k}={v}" for k, v in keep.items())
