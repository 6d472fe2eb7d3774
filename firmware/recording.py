"""Build a unit's recorder and run it: live on its configured devices
(`bodycam run --unit DIR`), or driven by a scenario on simulated devices,
on virtual time or in real time (`--sim --scenario FILE [--realtime]`).

A scenario is a driver, not a second recorder: it presses buttons by
driving the mock pins low and high, says what the microphone hears, stalls
the camera, sets the battery and the free space, and hands the GPS a fix.
Everything else is the runtime a real unit runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capture.pipeline import CaptureConfig
from capture.watermark import Face
from hal.gps import Fix, SimGps
from hal.pacing import Clock, LiveClock, ManualPacer, Pacer, ThreadPacer, VirtualClock
from sealing.store import Store
from sealing.unit import open_unit

from . import heap, preuse, unitconfig
from .devices import DeviceConfig, Devices, build_devices, parse_devices
from .machine import Policy, Trigger, Unexported
from .prompts import PROMPT_LANGUAGE, PromptBank
from .runtime import CameraRestart, DeviceError, Recorder
from .unitclock import UnitClock
from .unitconfig import UnitConfig

if TYPE_CHECKING:  # the simulation's: imported only where a scenario is played
    from .scenario import Happening, Scenario

PRESS_S = 0.1
HOLD_S = 2.0  # held past the 1.5 s hold time
DOUBLE_GAP_S = 0.15


def unit_policy(unit: Path) -> Policy:
    """The `[policy]` table of unit.toml (firmware/unitconfig.py checks it)."""
    return unitconfig.load(unit).policy


def unit_max_holdover_s(unit: Path) -> float:
    """unit.toml `[clock] max_holdover_h` (default 24) in seconds: how long the
    unit vouches for its clock after a dock or GPS sync."""
    return unitconfig.load(unit).clock.max_holdover_s


def oldest_unexported_age_s(store: Store, now_us: int) -> int | None:
    held = [
        r
        for r in store.records()
        if r.type in ("segment", "still") and (store.segments / r.body["file"]).exists()
    ]
    return None if not held else max(0, (now_us - min(r.stamp.wall_us for r in held)) // 10**6)


class ShiftedClock:
    """The live clock with a scenario's injected wall-clock jump."""

    def __init__(self) -> None:
        self.wall_jump_ns = 0

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def time_ns(self) -> int:
        return time.time_ns() + self.wall_jump_ns

    def true_time_ns(self) -> int:
        return time.time_ns()


def build(
    unit: Path,
    cfg: DeviceConfig,
    *,
    clock: Clock,
    pacer: Pacer,
    policy: Policy,
    capture: CaptureConfig,
    log: Callable[[str], None],
    mode: str,
    scenario: Scenario | None = None,
    config: UnitConfig | None = None,
    media_log: Callable[[str], None] | None = None,
) -> Recorder:
    """Open the store (recovering first), the devices and the recorder.
    `config` is the unit's checked unit.toml (read here when not given)."""
    config = config or unitconfig.load(unit)
    unitclock = UnitClock(
        monotonic_ns=clock.monotonic_ns,
        time_ns=clock.time_ns,
        max_holdover_s=config.clock.max_holdover_s,
    )
    boot_body: dict[str, object] = {"cause": "power on", "mode": mode}
    if config.unit.make or config.unit.model:  # sealed at every boot too (R20)
        boot_body["device"] = {"make": config.unit.make, "model": config.unit.model}
    store = open_unit(unit, clock=unitclock.stamp, boot_body=boot_body)
    log(f"recovery: {store.recovery}")
    origin = clock.monotonic_ns() // 1000
    opened = False
    try:  # a device library that raises must not leave the store locked
        devices = build_devices(
            cfg,
            clock=clock,
            pacer=pacer,
            store_path=store.root,
            sounds=scenario.sounds if scenario else None,
            sound_origin_us=origin,
            log=log,
        )
        opened = True
    finally:
        if not opened:
            store.close()
    if scenario is not None and scenario.speaker_echo_db is not None:
        hear_own_speaker(devices, origin, scenario.speaker_echo_db)
    prompts = PromptBank(
        Path(unit) / "prompts",
        # [devices.speaker] language, else the agency's (unit.toml [locale])
        str(cfg.opt("speaker", "language", PROMPT_LANGUAGE[config.locale.language])),
        render=cfg.backends["speaker"] == "sim",
    )
    rec = Recorder(
        store,
        unitclock,
        clock,
        devices,
        policy,
        capture,
        prompts,
        log=log,
        face=Face(config.locale.zone, PROMPT_LANGUAGE[config.locale.language]),
        camera_restart=CameraRestart.from_config(cfg),
        media_log=media_log,
    )
    rec.log(f"devices: {' '.join(f'{k}={v}' for k, v in devices.backends().items())}")
    return rec


def hear_own_speaker(devices: Devices, origin_us: int, gain_db: float) -> None:
    """The simulated microphone hears the simulated speaker through an echo
    path (hal/microphone_sim.py EchoPath), as a unit's microphone hears the
    speaker beside it."""
    from hal.microphone_sim import EchoPath, PacedMicrophone, SimSpeaker

    spk, mic = devices.speaker, devices.microphone
    if isinstance(spk, SimSpeaker) and isinstance(mic, PacedMicrophone):
        path = EchoPath(origin_us, gain_db)
        spk.listeners.append(path.heard)
        mic.source.echo = path


def _power_on(rec: Recorder) -> None:
    rec.start()
    rec.event(Trigger("power_on", rec.now_us()))  # starts only if the policy says so
    age = oldest_unexported_age_s(rec.store, rec.unitclock.stamp().wall_us)
    if age is not None:  # R15: the power-on warning for records not yet exported
        rec.event(Unexported(age, rec.now_us()))


def capture_config(
    cfg: DeviceConfig, policy: Policy, *, segment_s: float = 32.0, prerecord_s: float = 30.0
) -> CaptureConfig:
    width, height = cfg.size
    return CaptureConfig(
        segment_s=segment_s,
        prerecord_s=prerecord_s,
        prerecord_audio=policy.prerecord_audio,
        width=width,
        height=height,
        fps=int(cfg.opt("camera", "fps", 30)),
    )


def run_live(
    unit: Path,
    *,
    log: Callable[[str], None] = print,
    on_ready: Callable[[Recorder], None] | None = None,
    stop: threading.Event | None = None,
    config: UnitConfig | None = None,
    media_log: Callable[[str], None] | None = None,
) -> Recorder:
    """The unit as it runs in the field: configured devices, the live clock,
    until a stop request (SIGTERM) or `stop`. unit.toml is checked before the
    store is opened (`config`: already checked by the caller)."""
    config = config or unitconfig.load(unit)
    cfg = config.devices
    policy = config.policy
    if not heap.map_large_buffers_alone():  # RSS flat over a shift (firmware/heap.py)
        log("malloc: the mmap threshold could not be set; memory may creep over a shift")
    clock = LiveClock()
    rec = build(
        unit,
        cfg,
        clock=clock,
        pacer=ThreadPacer(clock),
        policy=policy,
        capture=capture_config(
            cfg, policy, segment_s=policy.segment_s, prerecord_s=policy.prerecord_s
        ),
        log=log,
        mode="live",
        config=config,
        media_log=media_log,
    )
    try:
        _power_on(rec)
        # the pre-use check runs beside: the first press is not kept waiting
        preuse.start_beside(unit, rec.inbox.put)
        if on_ready is not None:
            on_ready(rec)
        rec.run(stop)
        rec.finish()
    finally:
        rec.devices.close()
        rec.store.close()
    return rec


# -- scenarios ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """One thing the driver does at `t` seconds from the start."""

    t: float
    do: Callable[[], None]


def scenario_devices(scenario: Scenario) -> DeviceConfig:
    return parse_devices(
        {
            "camera": {"backend": "sim", "size": f"{scenario.width}x{scenario.height}"},
            "storage": {"backend": "sim"},
        }
    )


def _edges(h: Happening, d: Devices, clock: Any, rec: Recorder) -> list[Edge]:
    """What the driver does for one scenario happening."""
    t = h.t

    def pin(name: str) -> Any:
        return d.pin_factory.pin(getattr(d.pins, name))

    if h.kind in ("press", "hold", "double"):
        p = pin(str(h.value))
        if h.kind == "press":
            return [Edge(t, p.drive_low), Edge(t + PRESS_S, p.drive_high)]
        if h.kind == "hold":
            return [Edge(t, p.drive_low), Edge(t + HOLD_S, p.drive_high)]
        second = t + PRESS_S + DOUBLE_GAP_S
        return [
            Edge(t, p.drive_low),
            Edge(t + PRESS_S, p.drive_high),
            Edge(second, p.drive_low),
            Edge(second + PRESS_S, p.drive_high),
        ]
    if h.kind == "trigger":
        p = pin("trigger")
        return [Edge(t, p.drive_low), Edge(t + 0.5, p.drive_high)]
    if h.kind == "fault":
        reason = str(h.extra.get("reason", "injected fault"))
        if h.value == "camera":
            cam = d.camera
            return [Edge(t, lambda: cam.stall(reason))] if cam is not None else []  # type: ignore[attr-defined]
        if h.value == "microphone":
            from hal.microphone_sim import PacedMicrophone

            mic = d.microphone
            if isinstance(mic, PacedMicrophone):
                return [Edge(t, lambda: mic.source.fail(reason))]
            return []
        if h.value == "tamper":
            p = pin("tamper")
            return [Edge(t, p.drive_low)]
        return [Edge(t, lambda: rec.inbox.put(DeviceError(str(h.value), reason)))]
    if h.kind == "battery":
        minutes = int(h.extra.get("minutes", 60))
        return [Edge(t, lambda: d.battery.set(float(h.value), minutes))]  # type: ignore[union-attr]
    if h.kind == "storage_free_mib":
        return [Edge(t, lambda: setattr(d.storage, "free_override", int(h.value) << 20))]
    if h.kind in ("gps_time", "gps_fix"):
        gps = d.gps
        lat, lon = h.value if h.kind == "gps_fix" else (None, None)

        def fix() -> None:
            utc = datetime.fromtimestamp(clock.true_time_ns() / 1e9, UTC)
            if isinstance(gps, SimGps):
                gps.emit(
                    Fix(
                        utc,
                        None if lat is None else round(lat * 1e7),
                        None if lon is None else round(lon * 1e7),
                        1,
                        8,
                    )
                )

        return [Edge(t, fix)]
    if h.kind == "quiet":
        # a device goes silent without an error (a slow start, a driver that
        # stalls), then delivers again by itself
        from hal.camera_sim import PacedCamera
        from hal.microphone_sim import PacedMicrophone

        back = t + float(h.extra["seconds"])
        camera, microphone = d.camera, d.microphone
        if h.value == "camera" and isinstance(camera, PacedCamera):
            return [Edge(t, lambda: camera.stall("quiet")), Edge(back, camera.resume)]
        if h.value == "microphone" and isinstance(microphone, PacedMicrophone):
            return [
                Edge(t, lambda: microphone.hush(True)),
                Edge(back, lambda: microphone.hush(False)),
            ]
        return []
    if h.kind == "freeze_s":
        # the whole unit stops (as SIGSTOP): time passes, nothing runs, and the
        # devices make up or lose the missed periods as their buffers allow

        def freeze() -> None:
            clock.mono_ns += int(float(h.value) * 1e9)
            rec.log(f"the unit stopped for {h.value} s")

        return [Edge(t, freeze)]
    if h.kind == "clock_jump_s":

        def jump() -> None:
            clock.wall_jump_ns += int(float(h.value) * 1e9)
            rec.log(f"wall clock jumped {h.value} s")

        return [Edge(t, jump)]
    raise ValueError(f"unknown happening {h.kind}")


def run_scenario(
    unit: Path,
    scenario: Scenario,
    *,
    realtime: bool = False,
    policy: Policy | None = None,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
    wall_start_ns: int | None = None,
    on_ready: Callable[[Recorder], None] | None = None,
    config: UnitConfig | None = None,
    devices: DeviceConfig | None = None,
) -> Recorder:
    """Play `scenario` on simulated devices: on virtual time (as fast as the
    work allows, repeatable) or, with `realtime`, on the live clock.
    `devices` replaces the scenario's simulated camera (e.g. a replayed
    1080p H.264 clip for benchmarks)."""
    config = config or unitconfig.load(unit)  # checked before the store is opened
    if realtime and any(h.kind == "freeze_s" for h in scenario.happenings):
        # a process cannot stop itself and come back: SIGSTOP a live one instead
        from .scenario import ScenarioError

        raise ScenarioError("freeze_s needs virtual time (drop --realtime)")
    cfg = devices or scenario_devices(scenario)
    policy = policy or config.policy
    clock: VirtualClock | ShiftedClock
    pacer: Pacer
    if realtime:
        clock = ShiftedClock()
        pacer = ThreadPacer(clock)
    else:
        clock = VirtualClock(wall_start_ns if wall_start_ns is not None else time.time_ns())
        pacer = ManualPacer(clock)
    rec = build(
        unit,
        cfg,
        clock=clock,
        pacer=pacer,
        policy=policy,
        capture=capture_config(
            cfg, policy, segment_s=scenario.segment_seconds, prerecord_s=scenario.prerecord_seconds
        ),
        log=log,
        mode="simulation",
        scenario=scenario,
        config=config,
    )
    d = rec.devices
    if scenario.clock == "synced":  # the dock set the clock just before the run
        rec.set_clock(clock.true_time_ns() // 1000, "dock")
    try:
        _power_on(rec)
        # the pre-use check runs beside: the first press is not kept waiting
        preuse.start_beside(unit, rec.inbox.put)
        if on_ready is not None:
            on_ready(rec)
        edges = sorted(
            (e for h in scenario.happenings for e in _edges(h, d, clock, rec)), key=lambda e: e.t
        )
        if realtime:
            assert isinstance(clock, ShiftedClock)
            _drive_live(rec, edges, scenario.seconds)
        else:
            assert isinstance(pacer, ManualPacer)
            _drive_virtual(rec, pacer, edges, scenario.seconds)
        rec.finish()
    finally:
        d.close()
        rec.store.close()
    return rec


def _drive_virtual(rec: Recorder, pacer: ManualPacer, edges: list[Edge], seconds: float) -> None:
    t0 = rec.now_us()
    end = t0 + int(seconds * 1e6)
    step = 1_000_000 // rec.capture_config.fps
    pending = list(edges)
    now = t0
    rec.notify("READY=1")
    while now < end and rec.stop_reason is None:
        nxt = min(now + step, end)
        if pending:
            nxt = min(nxt, t0 + int(pending[0].t * 1e6))
        pacer.advance_to(nxt)
        now = nxt
        rec.pump()
        while pending and t0 + int(pending[0].t * 1e6) <= now:
            pending.pop(0).do()
            now = max(now, rec.now_us())  # a freeze moved the clock on
            rec.pump()
    if rec.stop_reason is not None:
        rec.log(f"stopping: {rec.stop_reason}")
    rec.stop_reason = rec.stop_reason or "end of scenario"


def _drive_live(rec: Recorder, edges: list[Edge], seconds: float) -> None:
    stop = threading.Event()
    start = time.monotonic()

    def drive() -> None:
        for e in edges:
            if stop.wait(max(0.0, start + e.t - time.monotonic())):
                return
            e.do()
        if not stop.wait(max(0.0, start + seconds - time.monotonic())):
            rec.request_stop("end of scenario")

    driver = threading.Thread(target=drive, name="scenario", daemon=True)
    driver.start()
    try:
        rec.run()
    finally:
        stop.set()
        driver.join(timeout=5)
