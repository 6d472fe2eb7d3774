"""The pre-use check beside the recorder (R3, R4; issue 28's start target).

`bodycam run` is ready to record about a second after it starts; the
self-test used to run before it (`ExecStartPre`, 6.8 s measured), so the
first press at power-on waited for it. Now the recorder starts at once and
the same checks run beside it:
- the unit's files (keys, the store's fsync, the firmware's and the venv's
  hashes: the slow part) on a thread of their own, touching no device;
- the devices judged by what they delivered to the running recorder in
  its first `listen_s` seconds (a keyframe from the camera, sound from the
  microphone, sentences from a serial GPS), what could not be opened, the
  battery as read, the clock's state;
and one `selftest` chain record, of the same shape as `bodycam selftest`
writes, says it all when done. `bodycam selftest` stays QA's check, on
devices it opens itself.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from boot import layout, selftest

LISTEN_S = 2.0  # as `bodycam selftest`: a GPS sends every second; camera and microphone at once


@dataclass(frozen=True)
class FileChecks:
    """What the file checks found, put on the recorder's queue when done (and
    not before `listen_s` has passed since the recorder started, so the
    devices have had their time to deliver)."""

    results: tuple[selftest.CheckResult, ...]
    listened_s: float


# The venv's hashing, beside a recorder at a higher priority, may take far
# longer than alone (on the emulated unit under load it passed the 20 s
# budget `bodycam selftest` keeps for systemd's start timeout, and failed for
# that alone). Nothing waits for it here: a longer budget, still a bound.
VENV_BUDGET_BESIDE_S = 600.0


def check_files(unit: Path) -> list[selftest.CheckResult]:
    root = layout.root_of(unit)
    return [
        selftest.check_keys(unit),
        selftest.check_store(unit),
        selftest.check_firmware(root),
        selftest.check_venv(root, budget_s=VENV_BUDGET_BESIDE_S),
    ]


def start_beside(
    unit: Path, put: Callable[[FileChecks], None], listen_s: float = LISTEN_S
) -> threading.Thread:
    """Run the file checks on a thread; `put` their result on the recorder's
    queue. Each check catches its own failure (`selftest._check`), so the
    thread always reports."""
    began = time.monotonic()

    def work() -> None:
        # below the recorder: hashing the venv must not slow a press or a frame
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        results = check_files(unit)
        time.sleep(max(0.0, began + listen_s - time.monotonic()))
        put(FileChecks(tuple(results), round(time.monotonic() - began, 2)))

    thread = threading.Thread(target=work, name="pre-use check", daemon=True)
    thread.start()
    return thread


@dataclass(frozen=True)
class Delivered:
    """What the recorder took in from its devices since it started."""

    keyframes: int
    frames: int
    chunks: int


def device_checks(
    delivered: Delivered,
    listened_s: float,
    has_camera: bool,
    has_microphone: bool,
    faults: dict[str, str],
) -> list[selftest.CheckResult]:
    """The camera and microphone judged by what they delivered (a device
    not configured, not opened or not started is a FAIL naming why)."""

    def why(device: str) -> str:
        return f": {faults[device]}" if device in faults else ""

    def camera() -> str | None:
        if not has_camera:
            return faults.get("camera", "no camera configured")
        if delivered.keyframes == 0:
            return f"{delivered.frames} frames and no keyframe in {listened_s:g} s{why('camera')}"
        return None

    def microphone() -> str | None:
        if not has_microphone:
            return faults.get("microphone", "no microphone configured")
        return None if delivered.chunks else f"no audio in {listened_s:g} s{why('microphone')}"

    return [
        selftest._check("camera frames", camera),
        selftest._check("microphone audio", microphone),
    ]
