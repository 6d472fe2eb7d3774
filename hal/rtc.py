"""The battery-backed real-time clock: read at start (before any other time
source), written back after an authenticated sync.

`LinuxRtc` uses the kernel's RTC class interface: the `since_epoch` sysfs
attribute to read (whole seconds, UTC) and the RTC_SET_TIME ioctl on the
device node to write. Only run against files standing in for sysfs and the
device here (no RTC on this machine).
"""

from __future__ import annotations

import fcntl
import struct
import time
from dataclasses import dataclass
from pathlib import Path

# _IOW('p', 0x0a, struct rtc_time): nine ints
RTC_SET_TIME = 0x4024700A
RTC_TIME = struct.Struct("9i")


@dataclass
class LinuxRtc:
    device: Path = Path("/dev/rtc0")
    sysfs: Path = Path("/sys/class/rtc/rtc0")
    name: str = "linux"

    def read_us(self) -> int | None:
        try:
            seconds = int((self.sysfs / "since_epoch").read_text().strip())
        except (OSError, ValueError):
            return None
        # an RTC that lost its battery restarts at its epoch (2000 or 1970): not a time
        return seconds * 1_000_000 if seconds > 1_600_000_000 else None

    def write_us(self, utc_us: int) -> None:
        t = time.gmtime(utc_us // 1_000_000)
        raw = RTC_TIME.pack(
            t.tm_sec, t.tm_min, t.tm_hour, t.tm_mday, t.tm_mon - 1, t.tm_year - 1900, 0, 0, 0
        )
        with self.device.open("wb") as f:
            fcntl.ioctl(f.fileno(), RTC_SET_TIME, raw)


@dataclass
class SimRtc:
    """A simulated RTC: holds a time (or none) and what was written to it."""

    utc_us: int | None = None
    name: str = "sim"

    def read_us(self) -> int | None:
        return self.utc_us

    def write_us(self, utc_us: int) -> None:
        self.utc_us = utc_us
