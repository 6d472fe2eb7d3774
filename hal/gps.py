"""GPS: NMEA 0183 from a serial port (pyserial), parsed with pynmea2 into fixes.

Garbage lines, bad checksums and torn sentences are counted and skipped,
never fatal. pynmea2 pitfalls handled here (platform-facts.md): checksums
are only enforced with check=True; empty lat/lon read as 0.0, so validity
comes from RMC status and GGA quality; an out-of-range field makes
`.datetime` raise TypeError. The serial backend has only run against the
replay of a recorded log (no GPS receiver here).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pynmea2


@dataclass(frozen=True)
class Fix:
    utc: datetime | None  # from a valid RMC (date and time)
    lat_e7: int | None  # degrees x 1e7 (integers: the chain has no floats)
    lon_e7: int | None
    quality: int  # GGA fix quality, 0 = none
    satellites: int
    # When its sentence was read (monotonic µs), so a fix that waited in a
    # queue is not taken as the time now; None: just now (a simulated GPS)
    read_mono_us: int | None = None

    @property
    def has_time(self) -> bool:
        return self.utc is not None

    def location(self) -> dict[str, int] | None:
        if self.lat_e7 is None or self.lon_e7 is None:
            return None
        return {
            "lat_e7": self.lat_e7,
            "lon_e7": self.lon_e7,
            "quality": self.quality,
            "satellites": self.satellites,
        }


# A recorded log the simulated GPS replays (and the self-test's sample).
SAMPLE_LOG = Path(__file__).resolve().parent / "data" / "gps_sample.nmea"
PLAUSIBLE_YEARS = (2024, 2099)  # what this firmware can meet in the field


@dataclass
class NmeaParser:
    """Feed lines; get a Fix after each RMC (merged with the latest GGA)."""

    good: int = 0
    bad_checksum: int = 0
    garbage: int = 0
    ignored: int = 0
    implausible: int = 0  # valid sentences whose fix cannot be true (see feed)
    _quality: int = 0
    _sats: int = 0

    def feed(self, line: str | bytes) -> Fix | None:
        if isinstance(line, bytes):
            line = line.decode("ascii", "replace")
        line = line.strip()
        if not line.startswith("$") or "*" not in line:
            self.garbage += 1  # includes torn sentences: no checksum part
            return None
        try:
            msg = pynmea2.parse(line, check=True)
        except pynmea2.ChecksumError:
            self.bad_checksum += 1
            return None
        except pynmea2.ParseError:
            self.garbage += 1
            return None
        kind = getattr(msg, "sentence_type", None)
        if kind == "GGA":
            self.good += 1
            try:
                self._quality = int(msg.gps_qual or 0)
                self._sats = int(msg.num_sats or 0)
            except (TypeError, ValueError):
                self.garbage += 1
            return None
        if kind != "RMC":
            self.ignored += 1
            return None
        self.good += 1
        # NMEA 2.3 mode: N not valid, E dead reckoning, S a simulator: no true fix
        if msg.status != "A" or getattr(msg, "mode_indicator", "A") in ("N", "E", "S"):
            return Fix(None, None, None, 0, self._sats)
        try:
            utc = msg.datetime.replace(tzinfo=UTC)
            lat, lon = float(msg.latitude), float(msg.longitude)
        except (TypeError, ValueError, AttributeError):
            self.garbage += 1
            return None
        # a receiver hit by the GPS week rollover reports 1999 or 2038; a corrupt
        # sentence can carry latitude 999: neither may set the clock or a position
        if (
            not (-90 <= lat <= 90 and -180 <= lon <= 180)
            or not PLAUSIBLE_YEARS[0] <= utc.year <= PLAUSIBLE_YEARS[1]
        ):
            self.implausible += 1
            return None
        return Fix(utc, round(lat * 1e7), round(lon * 1e7), self._quality, self._sats)


def fixes(lines: Iterable[str | bytes], parser: NmeaParser | None = None) -> Iterator[Fix]:
    parser = parser or NmeaParser()
    for line in lines:
        fix = parser.feed(line)
        if fix is not None:
            yield fix


def replay(path: Path, parser: NmeaParser | None = None) -> Iterator[Fix]:
    """The simulated GPS: a recorded NMEA log, line by line."""
    with Path(path).open("rb") as f:
        yield from fixes(f, parser)


class SerialGps:
    """The Gps port on the Pi's UART (pyserial, imported lazily): a reader
    thread turns lines into fixes. A serial error is reported once through
    `on_error` and ends the thread; garbage is counted, never fatal. Only run
    against a replayed log here (no receiver)."""

    name = "serial"

    def __init__(
        self,
        port: str = "/dev/serial0",
        baud: int = 9600,
        serial_module: Any = None,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        serial = serial_module or importlib.import_module("serial")
        self._monotonic_ns = monotonic_ns
        self._port = serial.Serial(port, baud, timeout=1.0)
        self.parser = NmeaParser()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_fix: Callable[[Fix], None], on_error: Callable[[str], None]) -> None:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    line = self._port.readline()
                except OSError as exc:  # pyserial's SerialException is an OSError
                    on_error(f"gps: {exc}")
                    return
                read_us = self._monotonic_ns() // 1000
                fix = self.parser.feed(line) if line else None
                if fix is not None:
                    on_fix(replace(fix, read_mono_us=read_us))

        self._thread = threading.Thread(target=run, name="gps", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._port.close()


class SimGps:
    """The Gps port for simulation: fixes arrive when the driver says so."""

    name = "sim"

    def __init__(self) -> None:
        self._on: Callable[[Fix], None] | None = None

    def start(self, on_fix: Callable[[Fix], None], on_error: Callable[[str], None]) -> None:
        self._on = on_fix

    def stop(self) -> None:
        self._on = None

    def emit(self, fix: Fix) -> None:
        if self._on is not None:
            self._on(fix)
