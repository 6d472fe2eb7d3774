"""Build a simulated unit's recorder from a scenario and run it (used by
`bodycam run --sim`, the demo and the tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from capture.pipeline import CaptureConfig
from hal.camera_sim import SimCamera
from hal.microphone_sim import SimMicrophone, SimSpeaker
from sealing.unit import open_unit

from .daemon import Recorder, VirtualTime
from .machine import ClockStatus, Policy
from .scenario import Scenario
from .unitclock import UnitClock


def run_scenario(unit: Path, scenario: Scenario, *, policy: Policy | None = None,
                 log: Callable[[str], None] = print, wall_start_ns: int | None = None,
                 on_ready: Callable[[Recorder], None] | None = None) -> Recorder:
    vt = VirtualTime(wall_start_ns if wall_start_ns is not None else time.time_ns())
    clock = UnitClock(monotonic_ns=vt.monotonic_ns, time_ns=vt.time_ns)
    if scenario.clock == "synced":
        clock.set_from(vt.true_time_ns() // 1000, "rtc")
    store = open_unit(unit, clock=clock.stamp, boot_body={"cause": "power on",
                                                          "mode": "simulation"})
    log(f"recovery: {store.recovery}")
    cfg = CaptureConfig(segment_s=scenario.segment_seconds,
                        prerecord_s=scenario.prerecord_seconds, width=scenario.width,
                        height=scenario.height)
    rec = Recorder(store, clock, vt, SimCamera(cfg.width, cfg.height, cfg.fps),
                   SimMicrophone(scenario.sounds), SimSpeaker(), policy or Policy(), cfg,
                   log=log)
    if on_ready is not None:
        on_ready(rec)
    try:
        rec.event(ClockStatus(clock.state, clock.source, rec.now_us()))
        rec.run(scenario)
    finally:
        store.close()
    return rec
