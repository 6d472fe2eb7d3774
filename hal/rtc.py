"""The battery-backed real-time clock: read at start (before any other time
source), written back after an authenticated sync.

`LinuxRtc` uses the kernel's RTC class interface: the `since_epoch` sysfs
attribute to read (whole seconds, UTC) and the RTC_SET_TIME ioctl on the
device node to write. Only run against files standing in for sysfs and the
device here (no RTC on this machine).
"""

from __future__ import annotations

import errno
import fcntl
import struct
import time
from dataclasses import dataclass
from pathlib import Path


class RtcInvalid(Exception):
    """The RTC is there but holds no valid time (oscillator stopped, battery dead)."""


# _IOW('p', 0x0a, struct rtc_time): nine ints
RTC_SET_TIME = 0x4024700A
RTC_TIME = struct.Struct("9i")


SYSFS = Path("/sys/class/rtc")
# drivers of the battery-backed chips we fit (the DS3231 is run by rtc-ds1307)
FITTED = ("rtc-ds1307", "rtc-pcf85063", "rtc-rv3028")


@dataclass
class LinuxRtc:
    device: Path = Path("/dev/rtc0")
    sysfs: Path = SYSFS / "rtc0"
    name: str = "linux"

    @classmethod
    def at(cls, device: Path, sysfs_root: Path = SYSFS) -> LinuxRtc:
        return cls(device, sysfs_root / device.name)

    @classmethod
    def find(cls, sysfs_root: Path = SYSFS, dev: Path = Path("/dev")) -> LinuxRtc:
        """The fitted RTC chip, whichever number the kernel gave it: on a Pi 5
        the SoC's own RTC is rtc0 and a DS3231 on I2C becomes rtc1. rtc0 if
        none of ours is there."""
        for node in sorted(sysfs_root.glob("rtc*")):
            try:
                driver = (node / "name").read_text().strip()
            except OSError:
                continue
            if driver.startswith(FITTED):
                return cls(dev / node.name, node)
        return cls(dev / "rtc0", sysfs_root / "rtc0")

    def read_us(self) -> int | None:
        """None if there is no RTC; RtcInvalid if it has no valid time."""
        path = self.sysfs / "since_epoch"
        if not self.sysfs.exists():
            return None
        try:
            text = path.read_text().strip()
        except OSError as exc:
            # rtc-ds1307 and rtc-pcf85063 answer EINVAL while the oscillator-stop
            # flag is set: the chip lost power and its time means nothing
            if exc.errno == errno.EINVAL:
                raise RtcInvalid("the RTC's oscillator stopped (time invalid)") from None
            raise
        try:
            seconds = int(text)
        except ValueError:
            raise RtcInvalid(f"the RTC gave {text!r}, not a time") from None
        if seconds < 1_600_000_000:  # restarted at its epoch (2000 or 1970)
            raise RtcInvalid(f"the RTC lost its time (it reads {seconds} s after 1970)")
        return seconds * 1_000_000

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
    invalid: str | None = None  # set: the chip reports its time invalid (fault injection)

    def read_us(self) -> int | None:
        if self.invalid:
            raise RtcInvalid(self.invalid)
        return self.utc_us

    def write_us(self, utc_us: int) -> None:
        self.utc_us = utc_us
