"""The unit's view of wall time: the system clock plus an offset it keeps
from its last authenticated source, and how far it vouches for the result.

States (every change is returned to the caller as the body of a `clock`
chain record, never made silently):

* `synced`: a dock or a GPS fix set the clock during this power-on, less
  than `max_holdover_s` ago;
* `holdover`: the time was carried across a power-off by the RTC, from an
  authenticated sync less than `max_holdover_s` before it (the sync's time
  comes from the chain, so it survives any reboot);
* `unverified`: anything else: no sync yet, the last one too old, an RTC
  that lost its time (oscillator-stop flag, dead battery), or one that reads
  earlier than the firmware's build date or the chain's last record.

The system clock is not trusted to stand still: anyone (an NTP client, an
administrator, fake-hwclock) may step it. `watch()` compares wall and
monotonic time each second; a step it did not make is undone in the offset
(so the unit's time runs on) and reported. The Pi backend would step the
system clock itself; keeping an offset lets the same code run in simulation
and tests without root.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sealing.canonical import MAX_INT
from sealing.recordings import utc_text
from sealing.records import Stamp

AUTHENTICATED = ("dock", "gps")
# Nothing this firmware records can be older than its build: an RTC reading
# earlier than this has lost its time. Release tooling moves it forward.
BUILD_UTC_US = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1_000_000)
# ... and nothing it records is meant for a century from now
LATEST_UTC_US = BUILD_UTC_US + 50 * 365 * 24 * 3600 * 1_000_000
FOREIGN_STEP_US = 250_000  # wall minus monotonic moving this much is a step, not jitter


def as_offered(true_us: int) -> int | str:
    """A refused time as the chain can hold it: records carry integers only
    within +-(2^53 - 1) (docs/FORMAT.md section 2), so an absurd one is kept
    as its decimal text rather than lost."""
    return true_us if abs(true_us) <= MAX_INT else str(true_us)


def outside_window(source: str, true_us: int) -> str | None:
    """Why an offered time must not be taken (None: it may). A dock or receiver
    with a wrong date must not walk the chain out of range: negative or
    year-10000 times would break the store."""
    if BUILD_UTC_US <= true_us <= LATEST_UTC_US:
        return None
    return (
        f"{source} time {true_us} us is outside {_iso(BUILD_UTC_US)}..{_iso(LATEST_UTC_US)} "
        "(before this firmware was built, or absurdly far ahead): not taken"
    )


@dataclass
class UnitClock:
    monotonic_ns: Callable[[], int] = time.monotonic_ns
    time_ns: Callable[[], int] = time.time_ns
    offset_us: int = 0
    state: str = "unverified"
    source: str = "none"
    synced_wall_us: int | None = None  # unit time of the last dock/GPS sync
    max_holdover_s: float = 24 * 3600
    _base_us: int | None = field(default=None, repr=False)  # wall - mono at the last look
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now_us(self) -> int:
        return self.time_ns() // 1000 + self.offset_us

    def stamp(self) -> Stamp:
        with self._lock:
            return Stamp(self.monotonic_ns() // 1000, self.now_us(), self.state, self.source)

    def set_from(self, true_us: int, source: str) -> dict[str, Any]:
        """Step to an authenticated time; return the body of the `clock` record."""
        with self._lock:
            before = self.now_us()
            self.offset_us += true_us - before
            self.state, self.source = "synced", source
            if source in AUTHENTICATED:
                self.synced_wall_us = true_us
            self._base_us = self._system_base()
            return {
                "before_us": before,
                "after_us": true_us,
                "step_us": true_us - before,
                "source": source,
                "state": "synced",
            }

    def adopt_rtc(self, rtc_us: int, last_sync_us: int | None, floor_us: int) -> dict[str, Any]:
        """Take the time from the RTC at power-on: holdover only within
        `max_holdover_s` of the last authenticated sync, never below `floor_us`."""
        with self._lock:
            before = self.now_us()
            body: dict[str, Any] = {
                "event": "rtc",
                "before_us": before,
                "rtc_us": rtc_us,
                "last_sync_us": last_sync_us,
            }
            if rtc_us < floor_us:
                self.state, self.source = "unverified", "none"
                body.update(
                    state="unverified",
                    adopted=False,
                    reason=f"the RTC reads {_iso(rtc_us)}, before {_iso(floor_us)} "
                    "(the firmware's build or the chain's last record)",
                )
                return body
            self.offset_us += rtc_us - before
            self._base_us = self._system_base()
            self.synced_wall_us = last_sync_us
            age_s = None if last_sync_us is None else (rtc_us - last_sync_us) / 1e6
            if age_s is not None and 0 <= age_s <= self.max_holdover_s:
                self.state, self.source = "holdover", "rtc"
                reason = f"last authenticated sync {age_s / 3600:.1f} h before"
            else:
                self.state, self.source = "unverified", "rtc"
                reason = (
                    "no authenticated sync in the chain"
                    if age_s is None
                    else f"last authenticated sync {age_s / 3600:.1f} h before, more than "
                    f"{self.max_holdover_s / 3600:g} h"
                )
            body.update(state=self.state, adopted=True, step_us=rtc_us - before, reason=reason)
            return body

    def refuse_rtc(self, reason: str) -> dict[str, Any]:
        """The RTC has no valid time (oscillator stopped, battery dead)."""
        with self._lock:
            self.state, self.source = "unverified", "none"
            return {"event": "rtc", "adopted": False, "state": "unverified", "reason": reason}

    def watch(self) -> list[dict[str, Any]]:
        """Once a second: a foreign step of the system clock, and the end of
        holdover; the bodies of the `clock` records to append (usually none)."""
        out: list[dict[str, Any]] = []
        with self._lock:
            base = self._system_base()
            if self._base_us is not None and abs(base - self._base_us) > FOREIGN_STEP_US:
                step = base - self._base_us
                self.offset_us -= step  # our time runs on as the monotonic clock says
                out.append(
                    {
                        "event": "foreign_step",
                        "system_step_us": step,
                        "state": self.state,
                        "reason": "the system clock was stepped by "
                        "something other than this firmware; the unit's time is kept",
                    }
                )
            self._base_us = base
            if (
                self.state in ("synced", "holdover")
                and self.synced_wall_us is not None
                and self.now_us() - self.synced_wall_us > self.max_holdover_s * 1e6
            ):
                out.append(
                    {
                        "event": "expired",
                        "from": self.state,
                        "state": "unverified",
                        "reason": f"no authenticated sync for {self.max_holdover_s / 3600:g} h",
                    }
                )
                self.state = "unverified"
        return out

    def _system_base(self) -> int:
        return self.time_ns() // 1000 - self.monotonic_ns() // 1000


def _iso(us: int) -> str:
    return utc_text(us)
