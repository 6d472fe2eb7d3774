"""Battery: a MAX17048 fuel gauge on I2C (smbus2), or a simulated curve.

The MAX17048's registers are big-endian 16-bit; SMBus word reads are
little-endian, so bytes are swapped. Only the simulated gauge and a test
double of smbus2's SMBus have run here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

ADDRESS = 0x36
VCELL, SOC, CRATE = 0x02, 0x04, 0x16


@dataclass(frozen=True)
class BatteryReading:
    percent: int
    volts_mv: int
    charging: bool
    minutes_left: int  # at the current discharge rate; large when charging


def _swap(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


class Max17048:
    name = "max17048"

    def __init__(self, bus: Any = None, busno: int = 1) -> None:
        if bus is None:
            bus = importlib.import_module("smbus2").SMBus(busno)
        self.bus = bus

    def _read(self, reg: int) -> int:
        return _swap(self.bus.read_word_data(ADDRESS, reg))

    def read(self) -> BatteryReading:
        mv = self._read(VCELL) * 78125 // 1_000_000  # 78.125 uV per LSB
        soc = self._read(SOC) / 256.0
        rate = self._read(CRATE)
        if rate & 0x8000:
            rate -= 0x10000
        pct_per_hour = rate * 0.208
        charging = pct_per_hour > 0
        minutes = 10**6 if pct_per_hour >= 0 else int(soc / -pct_per_hour * 60)
        return BatteryReading(int(soc), mv, charging, minutes)


@dataclass
class SimBattery:
    """A simulated gauge: percent falls linearly over `hours`; a scenario may
    set the reading outright (`set`)."""

    percent: float = 100.0
    hours: float = 10.0
    minutes_left: int | None = None  # as set; else from the linear curve
    name: str = "sim"

    def drain(self, seconds: float) -> None:
        self.percent = max(0.0, self.percent - seconds / 3600 * 100 / self.hours)

    def set(self, percent: float, minutes_left: int | None = None) -> None:
        self.percent, self.minutes_left = percent, minutes_left

    def read(self) -> BatteryReading:
        minutes = self.minutes_left
        if minutes is None:
            minutes = int(self.percent / (100 / self.hours) * 60)
        return BatteryReading(int(self.percent), 3600 + int(self.percent * 6), False, minutes)
