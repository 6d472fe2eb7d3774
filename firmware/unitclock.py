"""The unit's view of wall time: the system clock plus an offset it keeps
from its last authenticated source, and how far it vouches for the result.

The Pi backend would step the system clock itself (hal.clock); this keeps
the offset so the same code runs in simulation and tests without root. Every
change is returned to the caller to be recorded (never a silent change).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sealing.records import Stamp


@dataclass
class UnitClock:
    monotonic_ns: Callable[[], int] = time.monotonic_ns
    time_ns: Callable[[], int] = time.time_ns
    offset_us: int = 0
    state: str = "unverified"
    source: str = "none"
    synced_at_mono_us: int | None = None
    max_holdover_s: float = 24 * 3600
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now_us(self) -> int:
        return self.time_ns() // 1000 + self.offset_us

    def stamp(self) -> Stamp:
        with self._lock:
            mono = self.monotonic_ns() // 1000
            if (
                self.state == "synced"
                and self.synced_at_mono_us is not None
                and mono - self.synced_at_mono_us > self.max_holdover_s * 1e6
            ):
                self.state = "holdover"
            return Stamp(mono, self.now_us(), self.state, self.source)

    def set_from(self, true_us: int, source: str) -> dict[str, int | str]:
        """Step to an authenticated time; return the body of the `clock` record."""
        with self._lock:
            before = self.now_us()
            self.offset_us += true_us - before
            self.state, self.source = "synced", source
            self.synced_at_mono_us = self.monotonic_ns() // 1000
            return {
                "before_us": before,
                "after_us": true_us,
                "step_us": true_us - before,
                "source": source,
                "state": "synced",
            }
