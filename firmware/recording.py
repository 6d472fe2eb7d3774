"""Build a simulated unit's recorder from a scenario and run it (used by
`bodycam run --sim`, the demo and the tests)."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from capture.pipeline import CaptureConfig
from hal.camera_sim import SimCamera
from hal.microphone_sim import SimMicrophone, SimSpeaker
from sealing.store import Store
from sealing.unit import open_unit

from .daemon import Recorder, VirtualTime
from .machine import ClockStatus, Policy, Unexported
from .scenario import Scenario
from .unitclock import UnitClock


def unit_policy(unit: Path) -> Policy:
    """The `[policy]` table of unit.toml (docs/STATES.md names the fields)."""
    path = Path(unit) / "unit.toml"
    table = tomllib.loads(path.read_text()).get("policy", {}) if path.exists() else {}
    known = set(Policy.__dataclass_fields__)
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"unit.toml [policy]: unknown keys {sorted(unknown)}")
    return Policy(**table)


def oldest_unexported_age_s(store: Store, now_us: int) -> int | None:
    held = [r for r in store.records() if r.type in ("segment", "still")
            and (store.segments / r.body["file"]).exists()]
    return None if not held else max(0, (now_us - min(r.stamp.wall_us for r in held)) // 10**6)


def run_scenario(unit: Path, scenario: Scenario, *, policy: Policy | None = None,
                 log: Callable[[str], None] = lambda line: print(line, flush=True),
                 wall_start_ns: int | None = None,
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
                   SimMicrophone(scenario.sounds), SimSpeaker(), policy or unit_policy(unit),
                   cfg, log=log)
    if on_ready is not None:
        on_ready(rec)
    try:
        rec.event(ClockStatus(clock.state, clock.source, rec.now_us()))
        age = oldest_unexported_age_s(store, clock.stamp().wall_us)
        if age is not None:  # R15: the power-on warning for records not yet exported
            rec.event(Unexported(age, rec.now_us()))
        rec.run(scenario)
    finally:
        store.close()
    return rec
