"""Time for the unit: one injectable clock (monotonic + wall) and a pacer
that runs simulated devices on it.

`LiveClock` is the machine's clocks. `VirtualClock` is a scenario's: it only
moves when a `ManualPacer` advances it, so a run is repeatable and as fast
as the work allows. Simulated devices ask a pacer to call them every period
(a frame, a block of samples): `ThreadPacer` does that from a thread of the
device's own, sleeping on the live clock, the way a real camera's encoder
thread delivers; `ManualPacer` does it on the caller's thread when it is
advanced, in time order across devices.

A device that nobody served for a while (the process stopped, the machine
too busy) does not make up the time: a real one holds `backlog` periods in
its buffers and loses the rest. So a pacer that finds itself more than
`backlog` periods behind skips ahead, and the device sees the jump in the
due instants it is called with. `backlog=None` makes up every period, late
and back-dated: a backend that back-fills (tests use it to check that the
runtime refuses what such a device passes off as continuous).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol


class Clock(Protocol):
    def monotonic_ns(self) -> int: ...

    def time_ns(self) -> int: ...


class LiveClock:
    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def time_ns(self) -> int:
        return time.time_ns()


@dataclass
class VirtualClock:
    """Monotonic from 1 s (a real monotonic clock is never 0); wall from a
    start instant, plus any jump a scenario injects."""

    wall_start_ns: int
    mono_ns: int = 1_000_000_000
    wall_jump_ns: int = 0

    def monotonic_ns(self) -> int:
        return self.mono_ns

    def time_ns(self) -> int:
        return self.wall_start_ns + self.mono_ns + self.wall_jump_ns

    def true_time_ns(self) -> int:
        """What a GPS or a dock would say: the wall clock without injected jumps."""
        return self.wall_start_ns + self.mono_ns


Tick = Callable[[int], None]  # called with the due instant, monotonic us


class Task(Protocol):
    def cancel(self) -> None: ...


class Pacer(Protocol):
    @property
    def clock(self) -> Clock: ...

    def every(self, period_us: Fraction, fn: Tick, name: str, backlog: int | None = None) -> Task:
        """Call `fn(due_us)` at start + k * period for k = 0, 1, ... until
        cancelled; when more than `backlog` periods behind, skip to the last
        `backlog` of them (None: never skip)."""


def catch_up(start_us: int, period_us: Fraction, k: int, now_us: int, backlog: int | None) -> int:
    """The k to call next: `k`, or the first of the last `backlog` periods
    due by `now_us` when the device has fallen further behind than that."""
    if backlog is None:
        return k
    latest = int((now_us - start_us) / period_us)  # the last period due by now
    return max(k, latest - backlog)


@dataclass
class _ThreadTask:
    stop: threading.Event
    thread: threading.Thread

    def cancel(self) -> None:
        self.stop.set()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=5)


class ThreadPacer:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or LiveClock()

    def every(self, period_us: Fraction, fn: Tick, name: str, backlog: int | None = None) -> Task:
        stop = threading.Event()
        start = self.clock.monotonic_ns() // 1000

        def run() -> None:
            k = 0
            while not stop.is_set():
                due = start + int(k * period_us)
                wait = (due - self.clock.monotonic_ns() // 1000) / 1e6
                if wait > 0 and stop.wait(wait):
                    return
                k = catch_up(start, period_us, k, self.clock.monotonic_ns() // 1000, backlog)
                fn(start + int(k * period_us))
                k += 1

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return _ThreadTask(stop, thread)


@dataclass
class _ManualTask:
    start_us: int
    period_us: Fraction
    fn: Tick
    order: int
    backlog: int | None = None
    k: int = 0
    cancelled: bool = False

    @property
    def due_us(self) -> int:
        return self.start_us + int(self.k * self.period_us)

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class ManualPacer:
    clock: VirtualClock
    _tasks: list[_ManualTask] = field(default_factory=list)

    def every(self, period_us: Fraction, fn: Tick, name: str, backlog: int | None = None) -> Task:
        task = _ManualTask(
            self.clock.mono_ns // 1000, Fraction(period_us), fn, len(self._tasks), backlog
        )
        self._tasks.append(task)
        return task

    def advance_to(self, t_us: int) -> None:
        """Run every call due up to `t_us`, in time order, moving the clock to
        each due instant first; then leave the clock at `t_us`. A task more
        than its backlog behind the clock (moved on by `freeze`) skips ahead."""
        now = self.clock.mono_ns // 1000
        for t in self._tasks:
            t.k = catch_up(t.start_us, t.period_us, t.k, now, t.backlog)
        while True:
            live = [t for t in self._tasks if not t.cancelled]
            self._tasks = live
            due = [t for t in live if t.due_us <= t_us]
            if not due:
                break
            task = min(due, key=lambda t: (t.due_us, t.order))
            at = task.due_us
            self.clock.mono_ns = max(self.clock.mono_ns, at * 1000)
            task.k += 1
            task.fn(at)
        self.clock.mono_ns = max(self.clock.mono_ns, t_us * 1000)

    def freeze(self, seconds: float) -> None:
        """Time passes and nothing runs (a stopped process): the clock moves
        on; the devices' missed periods are made up, or lost, at the next
        `advance_to` as their backlog says."""
        self.clock.mono_ns += int(seconds * 1e9)
