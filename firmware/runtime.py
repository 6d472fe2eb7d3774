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
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from capture import gopsign
from capture.pipeline import Capture, CaptureConfig
from capture.segmenter import SegmentInfo
from capture.sei import FrameTime
from capture.stills import StillInfo, with_exif
from capture.watermark import Watermark
from hal.gps import Fix
from hal.media import DeviceFault, EncodedFrame, PcmChunk
from hal.pacing import Clock
from hal.ports import AudioGap, Rtc
from hal.rtc import RtcInvalid
from sealing.canonical import b64
from sealing.keys import fingerprint
from sealing.records import Stamp
from sealing.store import SegmentMeta, SegmentWriter, Store

from . import machine as m
from .devices import Devices
from .prompts import PromptBank
from .signals import ALERTS, lights_for
from .unitclock import AUTHENTICATED, BUILD_UTC_US, UnitClock, as_offered, outside_window

TICK_US = 100_000
SYNC_US = 1_000_000  # checkpoint + fdatasync: the ~1 s power-loss bound
STALL_US = 1_000_000  # no frame (or audio) for this long: the device has stalled
CLOCK_TOLERANCE_US = 1_000_000
# A sync that finds the clock right is still recorded once an hour: the chain
# is where the last sync is kept across power-offs (holdover is judged on it).
RECONFIRM_US = 3600 * 1_000_000
DOCK_TIME_WAIT_S = 5.0


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


@dataclass(frozen=True)
class DockTime:
    """The dock's time, from the export service's thread; answered on `reply`."""

    t_us: int
    dock: str
    reply: Future[dict[str, Any]]


@dataclass(frozen=True)
class StopRequest:
    reason: str


Incoming = (
    EncodedFrame | PcmChunk | AudioGap | GestureIn | DeviceError | Fix | DockTime | StopRequest
)


class StoreSink:
    """capture's SegmentSink onto the sealed store."""

    def __init__(
        self,
        writer: SegmentWriter,
        stamp_at: Callable[[int], Stamp],
        retention: Callable[[], str],
        on_sealed: Callable[[Any], None],
    ) -> None:
        self.writer = writer
        self._stamp_at = stamp_at
        self._retention = retention
        self._on_sealed = on_sealed

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self, info: SegmentInfo) -> Any:
        rec = self.writer.close(
            SegmentMeta(
                start=self._stamp_at(info.start_us),
                end=self._stamp_at(info.end_us),
                container=info.container,
                codecs=list(info.codecs),
                duration_us=info.duration_us,
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
    notify: Callable[[str], bool] = sd_notify
    machine: m.Machine = field(init=False)
    capture: Capture = field(init=False)
    indicators: m.Indicate | None = None
    retention: str = "supervision"
    sealed: list[Any] = field(default_factory=list)
    faulted: set[str] = field(default_factory=set)
    audio_gaps: int = 0
    location: dict[str, int] | None = None
    prompts_played: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.machine = m.Machine(self.policy)
        self.capture = Capture(self._open_sink, self.capture_config, frame_time=self._frame_time)
        self.watermark = Watermark(self.store.serial, self.store.officer, self._frame_time)
        self.watermarked = False
        self.inbox: queue.SimpleQueue[Incoming] = queue.SimpleQueue()
        self._files: list[tuple[int, str]] = []  # (start_us, file) of the recording's segments
        now = self.now_us()
        self._next_tick = now
        self._next_sync = now + SYNC_US
        self._last = {"camera": now, "microphone": now}
        self._stalled: set[str] = set()  # stalled after delivering: systemd should restart us
        self._reported_missing: set[str] = set()
        self.stop_reason: str | None = None
        self._prerecord_us = 0

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
        return StoreSink(writer, self._stamp_at, lambda: self.retention, self._sealed)

    def _sealed(self, rec: Any) -> None:
        self.sealed.append(rec)
        self.log(
            f"sealed {rec.body['file']} ({rec.body['video_frames']} frames, "
            f"{rec.body['ct_len']} bytes)"
        )

    # -- starting and stopping ------------------------------------------------------------

    def start(self) -> None:
        """Start the devices and tell the machine how the unit came up."""
        d = self.devices
        q = self.inbox.put
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
        d.buttons.start(lambda g, line, at: q(GestureIn(g, line, at)))
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
            d.camera.start(q, lambda reason: q(DeviceError("camera", reason)))
        if d.microphone is not None:
            d.microphone.start(q, q, lambda reason: q(DeviceError("microphone", reason)))
        if d.gps is not None:
            d.gps.start(q, lambda reason: q(DeviceError("gps", reason)))
        now = self.now_us()
        self._last = {"camera": now, "microphone": now}
        self.show()

    def show(self) -> None:
        ind = m._indicate(self.machine.state)  # noqa: SLF001 - the machine's own rendering
        self.indicators = ind
        self.devices.indicators.show(lights_for(ind))

    def request_stop(self, reason: str) -> None:
        """From any thread (a signal handler): stop at the next turn of the loop."""
        self.inbox.put(StopRequest(reason))

    def finish(self) -> None:
        """Seal and stop: what SIGTERM and the end of a scenario come to."""
        reason = self.stop_reason or "end"
        self.event(m.Shutdown(reason, self.now_us()))
        self.capture.stop()  # whatever is still open (a pause leaves nothing open)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Live: handle events as they come until a stop request (or `stop` is set)."""
        self.notify("READY=1")
        while self.stop_reason is None and not (stop is not None and stop.is_set()):
            wait = max(0.0, (self._next_tick - self.now_us()) / 1e6)
            try:
                item = self.inbox.get(timeout=wait)
            except queue.Empty:
                item = None  # a quiet tick: the timers below still run
            if item is not None:
                self._handle(item)
            self.pump()
        self.notify("STOPPING=1")
        self.log(f"stopping: {self.stop_reason or 'stopped'}")

    def pump(self) -> None:
        """Handle everything queued, then whatever timers are due."""
        while self.stop_reason is None:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            self._handle(item)
        now = self.now_us()
        if now >= self._next_tick:
            self._next_tick = max(self._next_tick + TICK_US, now - TICK_US)
            self._tick(now)
        if now >= self._next_sync:
            self._next_sync = max(self._next_sync + SYNC_US, now)
            self._each_second(now)

    def _handle(self, item: Incoming) -> None:
        if isinstance(item, EncodedFrame):
            self._last["camera"] = self.now_us()
            if "camera" not in self.faulted:
                self.capture.push_video(item)
        elif isinstance(item, PcmChunk):
            self._last["microphone"] = self.now_us()
            if "microphone" not in self.faulted:
                self.capture.push_audio(item)
        elif isinstance(item, AudioGap):
            self._last["microphone"] = self.now_us()
            self.audio_gaps += 1  # capture fills the stretch with silence in place
            self._append(
                "fault",
                {
                    "what": "audio_gap",
                    "at_us": item.at_us,
                    "samples": item.samples,
                    "gaps": self.audio_gaps,
                    "reason": "microphone input overflow: samples lost, "
                    "filled with silence in place",
                },
            )
        elif isinstance(item, GestureIn):
            self._gesture(item)
        elif isinstance(item, DeviceError) and item.device == "watermark":
            self.watermarked = False  # the picture goes on without it; its SEI still has the time
            self._append("fault", {"what": "watermark", "reason": item.reason})
        elif isinstance(item, DeviceError):
            self._fault(item.device, item.reason)
        elif isinstance(item, Fix):
            self._fix(item)
        elif isinstance(item, DockTime):
            item.reply.set_result(self.set_clock(item.t_us, "dock", dock=item.dock))
        elif isinstance(item, StopRequest):
            self.stop_reason = item.reason

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
        self.event(m.Tick(now, self._speech(now)))

    def _watch(self, now: int) -> None:
        """A push device that goes quiet raises nothing: notice the silence."""
        for name in ("camera", "microphone"):
            if getattr(self.devices, name) is None or name in self.faulted:
                continue
            quiet = now - self._last[name]
            if quiet > STALL_US:
                self._stalled.add(name)
                self._fault(
                    name, f"no {'frame' if name == 'camera' else 'audio'} for {quiet / 1e6:.1f} s"
                )

    def _each_second(self, now: int) -> None:
        self._watch_clock()
        self.store.sync_open_segments()
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
        for action in self.machine.handle(event):
            self._do(action)

    def _do(self, a: m.Action) -> None:
        now = self.now_us()
        if isinstance(a, m.StartCapture):
            self._files = []
            if self.capture.segmenter.signer is None:
                self._new_recording_key()
            pre = self.capture.start(now, prerecord=a.prerecord)
            self._prerecord_us = pre
            if not a.prerecord and self.devices.camera is not None:
                self.devices.camera.request_keyframe()  # start now, not up to a GOP later
            self.log(f"capture started ({a.cause}), pre-record {pre / 1e6:.1f} s")
        elif isinstance(a, m.StopCapture):
            self.capture.stop()
            self.log(f"capture stopped ({a.cause})")
        elif isinstance(a, m.Record):
            body = dict(a.body)
            if a.type == "resume_note":
                body.update(self._where(int(body["window_from_us"])))
            if a.type == "mark":
                self.retention = "evidence"
            if a.type == "record_start":
                body["prerecord_us"] = self._prerecord_us
                body["prerecord_audio"] = self.capture_config.prerecord_audio
            self._append(a.type, body)
            if a.type == "record_stop":
                # the recording key dies with its recording: nothing on the unit
                # can sign another picture as part of it afterwards
                self.capture.segmenter.signer = None
        elif isinstance(a, m.Prompt):
            self._prompt(a.name)
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

    def _append(self, type_: str, body: dict[str, Any]) -> None:
        rec = self.store.append(type_, body, self.unitclock.stamp())
        self.log(f"record {rec.seq} {type_} {_brief(body)}")

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
        loc = self.location or {}
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
        extra: dict[str, Any] = {"location": self.location} if self.location else {}
        meta = getattr(cam, "last_still", None)  # the Pi camera says where the picture came from
        if meta is not None:
            extra["still"] = {"source": meta.source, "width": meta.width, "height": meta.height}
        rec = w.close(
            SegmentMeta(
                start=start,
                end=self.unitclock.stamp(),
                container="jpeg",
                codecs=["mjpeg"],
                retention=self.retention,
                extra=extra,
            )
        )
        self.log(f"still {rec.body['file']}")

    def _fault(self, device: str, reason: str) -> None:
        if device in self.faulted:
            return
        self.faulted.add(device)
        if device == "camera":
            self.capture.set_media(video=False)
        elif device == "microphone":
            self.capture.set_media(audio=False)
        self.event(m.Fault(device, reason, self.now_us()))

    # -- time ---------------------------------------------------------------------------------

    def _fix(self, fix: Fix) -> None:
        self.location = fix.location() or self.location
        if fix.utc is not None:
            self.set_clock(int(fix.utc.timestamp() * 1_000_000), "gps")

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
