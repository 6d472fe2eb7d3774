"""unit.toml, read and checked once, before anything is opened.

Every table of a unit's `unit.toml` becomes a frozen dataclass; every key is
checked for its type (a bool is not a number, a string is not a number),
finiteness and range, and an unknown table or key is refused. The one
exception is `ConfigError`, whose message names the key:

    unit.toml: [table] key = value: reason

A unit directory without unit.toml is all defaults (a freshly provisioned
test unit). The tables and their ranges are in docs/HARDWARE.md ("unit.toml").
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from capture.segmenter import segment_problem
from hal.gpio import PinMap
from link import locale as link_locale
from link.locale import Locale, LocaleError
from sealing.layout import SERIAL_RE
from sealing.people import NameRefused, person_name

from .machine import Policy
from .prompts import LANGS


class ConfigError(ValueError):
    """unit.toml is wrong; the message is `unit.toml: [table] key = value: reason`."""


def show(value: Any) -> str:
    """A value as the error shows it: quoted if a string (so "30" is visibly not
    30), true/false as TOML spells them, inf and nan as they are."""
    return ("true" if value else "false") if isinstance(value, bool) else repr(value)


def bad(table: str, key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"unit.toml: [{table}] {key} = {show(value)}: {why}")


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def refuse_unknown(table: str, data: dict[str, Any], known: list[str]) -> None:
    for key in data:
        if key not in known:
            raise bad(
                table,
                key,
                data[key],
                f"unknown key{_did_you_mean(key, known)}; known: {', '.join(sorted(known))}",
            )


# -- value checks: each returns the value or raises naming table and key --------------


def is_number(value: Any) -> bool:
    """A TOML integer or float, not a bool (True is an int in Python)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(table: str, key: str, value: Any, lo: float, hi: float) -> float:
    finite = "finite " if is_number(value) and not math.isfinite(value) else ""
    if not is_number(value) or finite or not lo <= value <= hi:
        raise bad(table, key, value, f"must be a {finite}number from {lo:g} to {hi:g}")
    return float(value)


def integer(table: str, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad(table, key, value, f"must be a whole number from {lo} to {hi}")
    return value


def boolean(table: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise bad(table, key, value, "must be true or false")
    return value


def choice(table: str, key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise bad(table, key, value, f"must be one of {', '.join(allowed)}")
    return value


def text(table: str, key: str, value: Any, max_len: int = 256) -> str:
    # no control characters: these end up in logs, chain records and file names
    if (
        not isinstance(value, str)
        or not value
        or len(value) > max_len
        or any(ord(c) < 32 for c in value)
    ):
        raise bad(
            table,
            key,
            value,
            f"must be a non-empty string (at most {max_len} characters, no control characters)",
        )
    return value


_SIZE = re.compile(r"([0-9]{1,4})x([0-9]{1,4})")


def frame_size(value: Any) -> tuple[int, int] | None:
    """(W, H) of a "WxH" whose sides are even, 16 to 4096 (H.264 4:2:0 needs even
    sides), else None."""
    m = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        return None
    w, h = int(m[1]), int(m[2])
    if not all(16 <= v <= 4096 and v % 2 == 0 for v in (w, h)):
        return None
    return w, h


SIZE_RULE = "must look like 1280x720 (even numbers, 16 to 4096)"


def table_of(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"unit.toml: {name} = {show(value)}: must be a table, [{name}]")
    return value


# -- [unit] [export] [clock] [sim] --------------------------------------------------------


@dataclass(frozen=True)
class UnitInfo:
    """[unit]: who the unit is; flashing (boot/flash.py) writes it."""

    serial: str = ""
    officer: str = ""
    profile: str = ""
    firmware_version: str = ""
    make: str = ""  # the device's make and model as QA flashed it (R20)
    model: str = ""


@dataclass(frozen=True)
class ExportConfig:
    """[export]: where the dock link listens (docs/EXPORT.md)."""

    address: str = "127.0.0.1"
    port: int = 8443


@dataclass(frozen=True)
class ClockConfig:
    """[clock]: how long the unit vouches for its clock after a sync (docs/STATES.md)."""

    max_holdover_h: float = 24.0

    @property
    def max_holdover_s(self) -> float:
        return self.max_holdover_h * 3600


@dataclass(frozen=True)
class SimConfig:
    """[sim]: what a simulated unit's selftest sees (docs/QA.md)."""

    gps_log: str | None = None  # None: the sample log in hal/data
    battery: float = 100.0


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def parse_unit(t: dict[str, Any]) -> UnitInfo:
    refuse_unknown("unit", t, _names(UnitInfo))
    if "serial" in t and (not isinstance(t["serial"], str) or not SERIAL_RE.fullmatch(t["serial"])):
        raise bad("unit", "serial", t["serial"], "must be 3 to 32 of A-Z, 0-9 and -")
    if "officer" in t:
        try:
            if person_name(t["officer"], "officer") != t["officer"]:
                raise NameRefused("officer is not in Unicode NFC form")
        except NameRefused as exc:
            raise ConfigError(f"unit.toml [unit] officer: {exc}") from None
    return UnitInfo(**{k: text("unit", k, v) for k, v in t.items()})


def parse_export(t: dict[str, Any]) -> ExportConfig:
    refuse_unknown("export", t, _names(ExportConfig))
    out = ExportConfig()
    address = t.get("address", out.address)
    try:
        ipaddress.ip_address(address if isinstance(address, str) else "")
    except ValueError:
        raise bad("export", "address", address, "must be an IP address") from None
    return ExportConfig(address, integer("export", "port", t.get("port", out.port), 1, 65535))


def parse_clock(t: dict[str, Any]) -> ClockConfig:
    refuse_unknown("clock", t, _names(ClockConfig))
    hours = t.get("max_holdover_h", ClockConfig.max_holdover_h)
    return ClockConfig(number("clock", "max_holdover_h", hours, 1, 720))


def parse_sim(t: dict[str, Any]) -> SimConfig:
    refuse_unknown("sim", t, _names(SimConfig))
    gps_log = text("sim", "gps_log", t["gps_log"], 4096) if "gps_log" in t else None
    return SimConfig(gps_log, number("sim", "battery", t.get("battery", 100), 0, 100))


# -- [policy] -------------------------------------------------------------------------------

# key -> (lo, hi) for the numbers; the type is the type of Policy's default
POLICY_RANGES: dict[str, tuple[float, float]] = {
    "note_min_speech_s": (0.5, 60),
    "note_window_s": (1, 600),
    "note_reprompts": (0, 5),
    "battery_warn_minutes": (0, 240),
    "battery_critical_percent": (0, 50),
    "storage_warn_fraction": (0, 1),
    "storage_floor_bytes": (0, 1 << 40),
    "unexported_warn_s": (0, 365 * 24 * 3600),
    "clock_warn_every_s": (1, 3600),
    "segment_s": (1, 3600),  # and a multiple of 8 (capture.segmenter.segment_problem)
    "prerecord_s": (0, 120),
}


def parse_policy(t: dict[str, Any]) -> Policy:
    defaults = Policy()
    refuse_unknown("policy", t, _names(Policy))
    values: dict[str, Any] = {}
    for key, value in t.items():
        want = type(getattr(defaults, key))
        if key == "clock_policy":
            values[key] = choice("policy", key, value, ("flag", "refuse"))
        elif want is bool:
            values[key] = boolean("policy", key, value)
        elif want is int:
            lo, hi = POLICY_RANGES[key]
            values[key] = integer("policy", key, value, int(lo), int(hi))
        else:
            lo, hi = POLICY_RANGES[key]
            values[key] = number("policy", key, value, lo, hi)
    # files are cut only where the sound's frames meet a keyframe: no silent rounding
    if "segment_s" in values and (why := segment_problem(values["segment_s"])) is not None:
        raise bad("policy", "segment_s", t["segment_s"], why)
    # the note window must be able to hold the speech it waits for
    window = values.get("note_window_s", defaults.note_window_s)
    speech = values.get("note_min_speech_s", defaults.note_min_speech_s)
    if window < speech and "note_window_s" in values:
        raise bad(
            "policy",
            "note_window_s",
            t["note_window_s"],
            f"must be at least note_min_speech_s ({speech:g})",
        )
    if window < speech:
        raise bad(
            "policy",
            "note_min_speech_s",
            t["note_min_speech_s"],
            f"must be at most note_window_s ({window:g})",
        )
    return Policy(**values)


# -- [devices] ------------------------------------------------------------------------------

BACKENDS: dict[str, tuple[str, ...]] = {
    "camera": ("sim", "replay", "picamera2", "none"),
    "microphone": ("sim", "pyaudio", "none"),
    "speaker": ("sim", "pyaudio"),
    "gpio": ("mock", "pi"),
    "gps": ("sim", "serial", "none"),
    "battery": ("sim", "max17048", "none"),
    "storage": ("fs", "sim"),
    "rtc": ("sim", "linux", "none"),
}
SIM_DEFAULT = {"gpio": "mock"}
PINS = tuple(f.name for f in fields(PinMap))
# key -> (type check, description) per device; `backend` is implied everywhere
KEYS: dict[str, dict[str, str]] = {
    "camera": {
        "size": "WxH",
        "fps": "int 1..120",
        "bitrate": "int 100000..50000000",
        "file": "path",
        "autofocus": "bool",
        "lens_position": "dioptres",
        # a camera that reported a fault is restarted (firmware/runtime.py, CameraRestart)
        "restart_attempts": "int 0..20",
        "restart_backoff_max_s": "int 1..60",
    },
    # frames per PortAudio callback, in ms (30 by default; larger: fewer callbacks)
    "microphone": {"device": "name", "block_ms": "int 10..500"},
    "speaker": {"device": "name", "language": "language", "block_ms": "int 10..500"},
    "gpio": {pin: "pin" for pin in PINS},
    "gps": {"port": "path", "baud": "baud"},
    "battery": {"bus": "int 0..31"},
    "storage": {},
    "rtc": {"device": "path"},
}
BAUDS = (4800, 9600, 19200, 38400, 57600, 115200)
# Pins the unit's buses own: a button or LED there would break the device
RESERVED_PINS = {
    2: "I2C SDA (fuel gauge, RTC)",
    3: "I2C SCL (fuel gauge, RTC)",
    14: "UART TX (GPS)",
    15: "UART RX (GPS)",
    18: "I2S BCLK (microphone)",
    19: "I2S LRCLK (microphone)",
    20: "I2S DIN (microphone)",
    21: "I2S DOUT (speaker amplifier)",
}


@dataclass(frozen=True)
class DeviceConfig:
    """[devices]: a backend per device and its checked options (docs/HARDWARE.md)."""

    backends: dict[str, str]
    options: dict[str, dict[str, Any]]

    @property
    def all_simulated(self) -> bool:
        return all(self.backends[d] in ("sim", "mock", "none") for d in BACKENDS if d != "storage")

    def opt(self, device: str, key: str, default: Any) -> Any:
        return self.options[device].get(key, default)

    @property
    def size(self) -> tuple[int, int]:
        size = frame_size(self.opt("camera", "size", "1280x720"))
        assert size is not None  # checked by parse_devices
        return size


def _device_value(device: str, key: str, kind: str, value: Any, base: Path) -> Any:
    table = f"devices.{device}"
    if kind.startswith("int"):
        lo, hi = (int(v) for v in kind.split()[1].split(".."))
        return integer(table, key, value, lo, hi)
    if kind == "pin":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 27:
            raise bad(table, key, value, "must be a BCM GPIO number from 0 to 27")
        return value
    if kind == "baud":
        if isinstance(value, bool) or value not in BAUDS:
            raise bad(table, key, value, f"must be one of {BAUDS}")
        return value
    if kind == "dioptres":  # libcamera LensPosition: 0 is infinity, 1/metres otherwise
        if not is_number(value) or not math.isfinite(value) or not 0 <= value <= 15:
            raise bad(
                table,
                key,
                value,
                "must be a number of dioptres from 0 (infinity) to 15 (a close-up)",
            )
        return float(value)
    if kind == "bool":
        return boolean(table, key, value)
    if kind == "WxH":
        if frame_size(value) is None:
            raise bad(table, key, value, SIZE_RULE)
        return value
    if kind == "language":
        if not isinstance(value, str) or value not in LANGS:
            raise bad(table, key, value, f"must be one of {sorted(LANGS)}")
        return value
    if not isinstance(value, str) or not value or "\0" in value:
        raise bad(table, key, value, "must be a non-empty string")
    if kind == "path" and key == "file":
        return str(Path(value) if os.path.isabs(value) else base / value)
    return value


def parse_devices(table: Any, base: Path = Path(".")) -> DeviceConfig:
    """Check `[devices]`; refuse anything unknown or out of range, naming the key."""
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"unit.toml: devices = {show(table)}: must be a table, [devices]")
    for device in table:
        if device not in BACKENDS:
            raise bad(
                "devices",
                device,
                table[device],
                f"unknown device{_did_you_mean(device, list(BACKENDS))}; "
                f"known: {', '.join(BACKENDS)}",
            )
    backends: dict[str, str] = {}
    options: dict[str, dict[str, Any]] = {}
    for device, allowed in BACKENDS.items():
        where = f"devices.{device}"
        sub = table.get(device, {})
        if not isinstance(sub, dict):
            raise bad("devices", device, sub, f"must be a table, [{where}]")
        known = KEYS[device]
        refuse_unknown(where, sub, ["backend", *known])
        backend = sub.get("backend", SIM_DEFAULT.get(device, "sim"))
        backends[device] = choice(where, "backend", backend, allowed)
        options[device] = {
            k: _device_value(device, k, known[k], v, base) for k, v in sub.items() if k != "backend"
        }
    if backends["camera"] == "replay" and "file" not in options["camera"]:
        raise bad("devices.camera", "backend", "replay", "needs file = the H.264 clip to replay")
    if "lens_position" in options["camera"] and options["camera"].get("autofocus"):
        raise bad(
            "devices.camera",
            "lens_position",
            options["camera"]["lens_position"],
            "fixes the focus; it cannot go with autofocus = true",
        )
    pins = [options["gpio"].get(p, getattr(PinMap(), p)) for p in PINS]
    for name, pin in zip(PINS, pins, strict=True):
        if pins.count(pin) > 1:
            both = " and ".join(p for p, q in zip(PINS, pins, strict=True) if q == pin)
            raise bad("devices.gpio", name, pin, f"two functions share a pin ({both})")
        if pin in RESERVED_PINS:
            raise bad(
                "devices.gpio",
                name,
                pin,
                f"GPIO {pin} is {RESERVED_PINS[pin]}, which the unit uses",
            )
    return DeviceConfig(backends, options)


# -- the whole file ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitConfig:
    """The whole unit.toml, checked; `load` of a unit without one is all defaults."""

    unit: UnitInfo
    export: ExportConfig
    clock: ClockConfig
    sim: SimConfig
    policy: Policy
    devices: DeviceConfig
    # the agency's language and time zone, carried here at flashing: what the
    # officer hears and sees (prompts, the watermark's local time)
    locale: Locale = field(default_factory=Locale)


TABLES = ("unit", "export", "clock", "sim", "policy", "devices", "locale")


def parse(data: dict[str, Any], base: Path = Path(".")) -> UnitConfig:
    """Check a parsed unit.toml; `base` is the folder relative paths start from."""
    for name, value in data.items():
        if name not in TABLES:
            raise ConfigError(
                f"unit.toml: [{name}]: unknown table{_did_you_mean(name, list(TABLES))}; "
                f"known: {', '.join(f'[{t}]' for t in TABLES)}"
                if isinstance(value, dict)
                else f"unit.toml: {name} = {show(value)}: unknown key (everything is in a table: "
                f"{', '.join(f'[{t}]' for t in TABLES)})"
            )
    return UnitConfig(
        unit=parse_unit(table_of(data, "unit")),
        export=parse_export(table_of(data, "export")),
        clock=parse_clock(table_of(data, "clock")),
        sim=parse_sim(table_of(data, "sim")),
        policy=parse_policy(table_of(data, "policy")),
        devices=parse_devices(table_of(data, "devices"), base),
        locale=parse_locale(data.get("locale")),
    )


def parse_locale(t: Any) -> Locale:
    try:
        return link_locale.parse(t, "[locale]")
    except LocaleError as exc:
        raise ConfigError(f"unit.toml {exc}") from None


def load(unit: Path) -> UnitConfig:
    """Read and check `unit`/unit.toml; a missing file is all defaults."""
    path = Path(unit) / "unit.toml"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return parse({}, path.parent)
    except OSError as exc:
        raise ConfigError(f"unit.toml: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"unit.toml: {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"unit.toml: not valid TOML: {exc}") from None
    return parse(data, path.parent)
