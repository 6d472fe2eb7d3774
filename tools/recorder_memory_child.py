"""The child of `bench.py recorder --memory`: `bodycam run`'s live runtime
(`run_live`) on a provisioned unit, with a sampler thread beside it that
prints one JSON line per sample of this process's resident memory. Kept
apart from bench_recorder so that this process imports only what the
runtime does (and the simulators its unit.toml names), not the bench's
encoder or numpy drawing.

argv: UNIT WARMUP_S MINUTES EVERY_S
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from firmware.recording import run_live
from firmware.runtime import Recorder


def status_bytes(field: str) -> int:
    """A size from /proc/self/status (the present value, not the peak: a
    slope needs it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_bytes() -> int:
    return status_bytes("VmRSS")


def ring_bytes(rec: Recorder) -> int:
    # the ring is a deque the loop thread appends to: a read that races an
    # append is simply taken again
    for _ in range(100):
        try:
            return rec.capture.ring_bytes
        except RuntimeError:
            time.sleep(0.001)
    raise RuntimeError("the pre-record ring never held still for a read")


def clip_bytes(rec: Recorder) -> int:
    """The replay camera's looped clip, held in memory by the bench's camera
    only (a Pi's camera holds no clip)."""
    source = getattr(rec.devices.camera, "source", None)
    return int(getattr(source, "clip_bytes", 0))


def emit(kind: str, rec: Recorder, t0: float) -> None:
    sample = {
        "kind": kind,
        "t": round(time.monotonic() - t0, 2),
        "rss": rss_bytes(),
        # the libraries' code pages (shared, and the kernel may drop them) apart
        # from the process's own memory
        "anon": status_bytes("RssAnon"),
        "ring": ring_bytes(rec),
        "clip": clip_bytes(rec),
        "mode": rec.machine.state.mode,
    }
    print(json.dumps(sample), flush=True)


def sample(rec: Recorder, warmup_s: float, minutes: float, every_s: float) -> None:
    t0 = time.monotonic()
    try:
        time.sleep(warmup_s)  # the pre-record ring fills
        emit("idle", rec, t0)
        pin = rec.devices.pin_factory.pin(rec.devices.pins.record)
        pin.drive_low()
        time.sleep(0.1)
        pin.drive_high()
        deadline = time.monotonic() + 5
        while rec.machine.state.mode != "recording":
            if time.monotonic() > deadline:
                raise RuntimeError("the record press did not start a recording in 5 s")
            time.sleep(0.01)
        start = time.monotonic()
        end = start + minutes * 60
        n = 0
        while True:
            emit("recording", rec, t0)
            n += 1
            due = start + n * every_s
            if due > end:
                break
            time.sleep(max(0.0, due - time.monotonic()))
    finally:
        rec.request_stop("memory bench done")


def main(argv: list[str]) -> int:
    unit, warmup_s, minutes, every_s = Path(argv[0]), float(argv[1]), float(argv[2]), float(argv[3])
    print(json.dumps({"kind": "imports", "rss": rss_bytes()}), flush=True)

    def on_ready(rec: Recorder) -> None:
        emit("ready", rec, time.monotonic())
        threading.Thread(target=sample, args=(rec, warmup_s, minutes, every_s), daemon=True).start()

    run_live(unit, log=lambda _line: None, on_ready=on_ready)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
