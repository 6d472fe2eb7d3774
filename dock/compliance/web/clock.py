"""Time as the page reads it. Sessions and sign-in locks run on the
monotonic clock (a wall-clock step neither ends nor stretches them); the wall
clock only says when, for people and for what outlives a restart. Tests give
a clock of their own."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Clock:
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

    def wall_at(self, monotonic: float) -> float:
        """The wall-clock time a monotonic instant is (or was)."""
        return self.wall() + (monotonic - self.monotonic())


def utc_text(wall: float) -> str:
    """2026-12-02 01:40:31 UTC, for people."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
