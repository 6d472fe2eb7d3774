"""Stalls: spans in which the recorder or a media device did not run, as the
monotonic clock shows them, and what arrived back-dated after them.

Watched against the unit's monotonic clock:
* the recorder's own loop: a gap between two of its turns longer than the
  threshold (the process stopped, the machine did not schedule it, a call
  blocked);
* each media device's delivery: a gap between two arrivals longer than the
  threshold. Arrivals are stamped by the device's thread as it hands an
  item over, so a slow loop is not taken for a silent device.

Spans that overlap (within the threshold) are one stall: a stopped process
shows as the loop, the camera and the microphone stopping together, and is
one record. A stall is recorded once nothing has joined it for `settle_us`.

After a device's gap, whatever it delivers dated before the gap ended (the
frames its buffers held, or a backend that back-fills) is refused and
counted: nothing is passed off as recorded inside the span. Samples the
microphone itself reports lost inside the span are counted there too.

Bookkeeping only: no I/O and no clock of its own (the runtime passes times
in); docs/FORMAT.md, "Stalls", is the record it makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STALL_US = 1_000_000  # nothing for this long: the part has stalled
SETTLE_US = 2_000_000  # a stall is written once nothing has joined it for this long
RECORDER = "recorder"
DEVICES = ("camera", "microphone")


@dataclass
class Stall:
    """One stall: each part that stopped, with its span (unit monotonic us)."""

    spans: dict[str, tuple[int, int]]
    touched_us: int  # when it last grew
    dropped_frames: int = 0  # pictures delivered after it, dated inside it: refused
    dropped_samples: int = 0  # likewise audio samples
    lost_samples: int = 0  # samples the microphone reported lost inside it
    ongoing: bool = False  # a device still silent when the recorder stopped

    @property
    def from_us(self) -> int:
        return min(f for f, _ in self.spans.values())

    @property
    def to_us(self) -> int:
        return max(t for _, t in self.spans.values())

    def near(self, from_us: int, to_us: int, slack_us: int) -> bool:
        return from_us <= self.to_us + slack_us and to_us >= self.from_us - slack_us

    def add(self, part: str, from_us: int, to_us: int, now_us: int) -> None:
        f, t = self.spans.get(part, (from_us, to_us))
        self.spans[part] = (min(f, from_us), max(t, to_us))
        self.touched_us = now_us

    def body(self) -> dict[str, Any]:
        """The `stall` record's body (docs/FORMAT.md, "Stalls")."""
        parts = sorted(self.spans)
        devices = [p for p in parts if p != RECORDER]
        said = []
        if RECORDER in self.spans:
            said.append("the recorder did not run")
        if devices:
            said.append(f"nothing came from the {' and the '.join(devices)}")
        span = (self.to_us - self.from_us) / 1e6
        return {
            "from_us": self.from_us,
            "to_us": self.to_us,
            "span_us": self.to_us - self.from_us,
            "what": parts,
            "spans": {p: [f, t] for p, (f, t) in sorted(self.spans.items())},
            "dropped_frames": self.dropped_frames,
            "dropped_samples": self.dropped_samples,
            "lost_samples": self.lost_samples,
            "ongoing": self.ongoing,
            "reason": f"{' and '.join(said)} for {span:.1f} s"
            + (" (still silent when the recorder stopped)" if self.ongoing else ""),
        }


@dataclass
class StallWatch:
    threshold_us: int = STALL_US
    settle_us: int = SETTLE_US
    open: list[Stall] = field(default_factory=list)
    uncounted: int = 0  # back-dated items refused after their stall was written
    _turn_us: int | None = None
    _arrived: dict[str, int] = field(default_factory=dict)
    _gap_end: dict[str, int] = field(default_factory=dict)  # device -> where its last gap ended
    _resumed_us: int = 0  # where the recorder's last stall ended

    def started(self, now_us: int) -> None:
        """The devices were just started: each is judged from now."""
        self._turn_us = now_us
        for d in DEVICES:
            self._arrived[d] = now_us

    def turn(self, now_us: int) -> None:
        """The loop turned; a long gap since its last turn is a recorder stall."""
        last, self._turn_us = self._turn_us, now_us
        if last is not None and now_us - last > self.threshold_us:
            self._span(RECORDER, last, now_us, now_us)
            self._resumed_us = now_us

    def arrived(self, device: str, at_us: int, *, judged: bool = True) -> bool:
        """`device` delivered at `at_us`. True if that ends a gap longer than
        the threshold (a stall of the device: the caller ends the open file).
        `judged` False: the gap is already explained (the device had failed
        and is being restarted); only the arrival is noted."""
        last = self._arrived.get(device)
        self._arrived[device] = at_us if last is None else max(last, at_us)
        if not judged or last is None or at_us - last <= self.threshold_us:
            return False
        self._span(device, last, at_us, at_us)
        self._gap_end[device] = at_us
        return True

    def back_dated(self, device: str, pts_us: int, samples: int = 0) -> bool:
        """Is an item of `device` dated inside its last gap (refuse it)? Counted."""
        end = self._gap_end.get(device)
        if end is None or pts_us >= end:
            return False
        stall = self._holding(device, pts_us)
        if stall is None:
            self.uncounted += 1
        elif samples:
            stall.dropped_samples += samples
        else:
            stall.dropped_frames += 1
        return True

    def lost(self, device: str, at_us: int, samples: int) -> bool:
        """Samples the device reports lost from `at_us`: part of a stall of
        it (counted there, True), or a loss of its own (False)."""
        stall = self._holding(device, at_us)
        if stall is None:
            return False
        stall.lost_samples += samples
        return True

    def quiet_us(self, device: str, now_us: int) -> int:
        """How long `device` has delivered nothing, not counting a stall of
        the recorder itself (its devices get the threshold again after it)."""
        return now_us - max(self._arrived.get(device, now_us), self._resumed_us)

    def due(self, now_us: int) -> list[Stall]:
        """Stalls nothing has joined for `settle_us`: to be recorded now."""
        done = [s for s in self.open if now_us - s.touched_us >= self.settle_us]
        self.open = [s for s in self.open if s not in done]
        return done

    def flush(self, now_us: int) -> list[Stall]:
        """Everything still open, and each device silent for longer than the
        threshold (its span up to now): the recorder is stopping."""
        for d in DEVICES:
            last = self._arrived.get(d)
            if last is not None and self.quiet_us(d, now_us) > self.threshold_us:
                self._span(d, last, now_us, now_us)
                stall = self._holding(d, last)
                if stall is not None:
                    stall.ongoing = True
        done, self.open = self.open, []
        return done

    def _holding(self, device: str, t_us: int) -> Stall | None:
        """The open stall with a span of `device` that `t_us` lies in."""
        for s in self.open:
            span = s.spans.get(device)
            if span is not None and span[0] - self.threshold_us <= t_us <= span[1]:
                return s
        return None

    def _span(self, part: str, from_us: int, to_us: int, now_us: int) -> None:
        for s in self.open:
            if s.near(from_us, to_us, self.threshold_us):
                s.add(part, from_us, to_us, now_us)
                return
        self.open.append(Stall({part: (from_us, to_us)}, now_us))
