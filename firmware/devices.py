"""The unit's devices, built from `unit.toml` `[devices]` (docs/HARDWARE.md).

    [devices.camera]      backend = "sim" | "replay" | "picamera2" | "none"
                          size = "1280x720", fps = 30, bitrate = 8000000,
                          file = "clip.h264" (replay), autofocus = true,
                          lens_position = 0.5 (fixed focus, dioptres; instead of autofocus)
    [devices.microphone]  backend = "sim" | "pyaudio" | "none"; device = "ALSA name"
    [devices.speaker]     backend = "sim" | "pyaudio"; device = "ALSA name"; language = "en"
    [devices.gpio]        backend = "mock" | "pi"; record = 17, ... (BCM pins, hal.gpio.PinMap)
    [devices.gps]         backend = "sim" | "serial" | "none"; port, baud
    [devices.battery]     backend = "sim" | "max17048" | "none"; bus = 1
    [devices.storage]     backend = "fs" | "sim"
    [devices.rtc]         backend = "sim" | "linux" | "none"; device = "/dev/rtc1" (default:
                          the DS3231 if the kernel has one, else rtc0)

A table left out is the simulated backend, so a unit provisioned without
naming devices is an all-simulated unit. Everything is checked before any
device is opened: an unknown key or a bad value is refused with its key
named (`DeviceConfigError`). A device that is configured but cannot be
opened at start (no camera on the ribbon, no sound card) does not stop the
unit: it is left out with the reason, which the recorder records as a fault.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hal.battery import Max17048, SimBattery
from hal.camera_replay import ReplayCamera
from hal.camera_sim import PacedCamera, SimCamera
from hal.gpio import GpioButtons, GpioIndicators, PinMap
from hal.gps import SerialGps, SimGps
from hal.media import DeviceFault
from hal.microphone_sim import PacedMicrophone, SimMicrophone, SimSpeaker, Sound
from hal.pacing import Clock, Pacer
from hal.ports import Battery, Buttons, Camera, Gps, Indicators, Microphone, Rtc, Speaker, Storage
from hal.rtc import LinuxRtc, SimRtc
from hal.storage import FsStorage, SimStorage

from .prompts import LANGS


class DeviceConfigError(ValueError):
    """unit.toml [devices] is wrong; the message names the key."""


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
    },
    "microphone": {"device": "name"},
    "speaker": {"device": "name", "language": "language"},
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
    backends: dict[str, str]
    options: dict[str, dict[str, Any]]

    @property
    def all_simulated(self) -> bool:
        return all(self.backends[d] in ("sim", "mock", "none") for d in BACKENDS if d != "storage")

    def opt(self, device: str, key: str, default: Any) -> Any:
        return self.options[device].get(key, default)

    @property
    def size(self) -> tuple[int, int]:
        w, h = str(self.opt("camera", "size", "1280x720")).split("x")
        return int(w), int(h)


def _check(device: str, key: str, kind: str, value: Any, base: Path) -> Any:
    where = f"[devices.{device}] {key}"

    def bad(why: str) -> DeviceConfigError:
        return DeviceConfigError(f"unit.toml {where} = {value!r}: {why}")

    if kind.startswith("int"):
        lo, hi = (int(v) for v in kind.split()[1].split(".."))
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise bad(f"must be a whole number from {lo} to {hi}")
        return value
    if kind == "pin":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 27:
            raise bad("must be a BCM GPIO number from 0 to 27")
        return value
    if kind == "baud":
        if value not in BAUDS or isinstance(value, bool):
            raise bad(f"must be one of {BAUDS}")
        return value
    if kind == "dioptres":  # libcamera LensPosition: 0 is infinity, 1/metres otherwise
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not 0 <= value <= 15:
            raise bad("must be a number of dioptres from 0 (infinity) to 15 (a close-up)")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("must be true or false")
        return value
    if kind == "WxH":
        parts = str(value).split("x") if isinstance(value, str) else []
        if (
            len(parts) != 2
            or not all(p.isdigit() for p in parts)
            or not all(16 <= int(p) <= 4096 and int(p) % 2 == 0 for p in parts)
        ):
            raise bad("must look like 1280x720 (even numbers, 16 to 4096)")
        return value
    if kind == "language":
        if value not in LANGS:
            raise bad(f"must be one of {sorted(LANGS)}")
        return value
    if not isinstance(value, str) or not value or "\0" in value:
        raise bad("must be a non-empty string")
    if kind == "path" and key == "file":
        path = Path(value) if os.path.isabs(value) else base / value
        return str(path)
    return value


def parse_devices(table: Any, base: Path = Path(".")) -> DeviceConfig:
    """Check `[devices]`; refuse anything unknown or out of range, naming the key."""
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise DeviceConfigError("unit.toml [devices] must be a table")
    unknown = set(table) - set(BACKENDS)
    if unknown:
        raise DeviceConfigError(
            f"unit.toml [devices]: unknown device(s) {sorted(unknown)} (known: {sorted(BACKENDS)})"
        )
    backends: dict[str, str] = {}
    options: dict[str, dict[str, Any]] = {}
    for device, allowed in BACKENDS.items():
        sub = table.get(device, {})
        if not isinstance(sub, dict):
            raise DeviceConfigError(f"unit.toml [devices.{device}] must be a table")
        backend = sub.get("backend", SIM_DEFAULT.get(device, "sim"))
        if backend not in allowed:
            raise DeviceConfigError(
                f"unit.toml [devices.{device}] backend = {backend!r}: "
                f"must be one of {list(allowed)}"
            )
        known = KEYS[device]
        extra = set(sub) - set(known) - {"backend"}
        if extra:
            raise DeviceConfigError(
                f"unit.toml [devices.{device}]: unknown key(s) "
                f"{sorted(extra)} (known: {sorted(known)})"
            )
        backends[device] = backend
        options[device] = {
            k: _check(device, k, known[k], v, base) for k, v in sub.items() if k != "backend"
        }
    if backends["camera"] == "replay" and "file" not in options["camera"]:
        raise DeviceConfigError("unit.toml [devices.camera] backend = 'replay' needs file = ...")
    if "lens_position" in options["camera"] and options["camera"].get("autofocus"):
        raise DeviceConfigError(
            "unit.toml [devices.camera]: lens_position fixes the focus; "
            "it cannot go with autofocus = true"
        )
    pins = [options["gpio"].get(p, getattr(PinMap(), p)) for p in PINS]
    if len(set(pins)) != len(pins):
        raise DeviceConfigError(f"unit.toml [devices.gpio]: two functions share a pin ({pins})")
    for name, pin in zip(PINS, pins, strict=True):
        if pin in RESERVED_PINS:
            raise DeviceConfigError(
                f"unit.toml [devices.gpio] {name} = {pin}: GPIO {pin} is "
                f"{RESERVED_PINS[pin]}, which the unit uses"
            )
    return DeviceConfig(backends, options)


def load_devices(unit: Path) -> DeviceConfig:
    path = Path(unit) / "unit.toml"
    try:
        data = tomllib.loads(path.read_text()) if path.exists() else {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeviceConfigError(f"{path}: {exc}") from None
    return parse_devices(data.get("devices"), base=path.parent)


@dataclass
class Devices:
    """The unit's ports, and what could not be opened (device -> reason)."""

    camera: Camera | None
    microphone: Microphone | None
    speaker: Speaker
    indicators: Indicators
    buttons: Buttons
    gps: Gps | None
    battery: Battery | None
    storage: Storage
    rtc: Rtc | None
    absent: dict[str, str] = field(default_factory=dict)
    pin_factory: Any = None  # the mock factory, for a driver that presses buttons
    pins: PinMap = field(default_factory=PinMap)

    def backends(self) -> dict[str, str]:
        out = {}
        for name in BACKENDS:
            dev = self.indicators if name == "gpio" else getattr(self, name)
            out[name] = "absent" if name in self.absent else (dev.name if dev else "none")
        return out

    def close(self) -> None:
        for dev in (self.camera, self.microphone, self.speaker, self.gps):
            if dev is not None:
                dev.stop()
        self.buttons.close()
        self.indicators.close()


def _mock_factory() -> Any:
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    return MockFactory(pin_class=MockPWMPin)


def _pi_factory() -> Any:
    # gpiozero picks lgpio (Pi 5) or RPi.GPIO itself; asked for explicitly, never global
    from gpiozero import Device

    Device.ensure_pin_factory()
    return Device.pin_factory


def build_devices(
    cfg: DeviceConfig,
    *,
    clock: Clock,
    pacer: Pacer,
    store_path: Path,
    sounds: list[Sound] | None = None,
    sound_origin_us: int = 0,
    log: Callable[[str], None] = print,
) -> Devices:
    """Open every configured device. Pi libraries load here, only when named."""
    absent: dict[str, str] = {}
    width, height = cfg.size
    fps = int(cfg.opt("camera", "fps", 30))

    def attempt(device: str, make: Callable[[], Any]) -> Any:
        try:
            return make()
        except (DeviceFault, OSError, ImportError, RuntimeError, ValueError) as exc:
            absent[device] = f"{type(exc).__name__}: {exc}"
            log(f"device {device} not available: {absent[device]}")
            return None

    camera: Camera | None = None
    b = cfg.backends["camera"]
    if b == "sim":
        camera = attempt(
            "camera", lambda: PacedCamera(SimCamera(width, height, fps, gop=fps), pacer, fps)
        )
    elif b == "replay":
        camera = attempt(
            "camera",
            lambda: PacedCamera(
                ReplayCamera(Path(cfg.opt("camera", "file", ""))), pacer, fps, name="replay"
            ),
        )
    elif b == "picamera2":
        from hal.camera_pi import PiCamera

        camera = attempt(
            "camera",
            lambda: PiCamera(
                clock,
                width,
                height,
                fps,
                int(cfg.opt("camera", "bitrate", 8_000_000)),
                bool(cfg.opt("camera", "autofocus", "lens_position" not in cfg.options["camera"])),
                cfg.options["camera"].get("lens_position"),
            ),
        )

    microphone: Microphone | None = None
    b = cfg.backends["microphone"]
    if b == "sim":
        microphone = PacedMicrophone(SimMicrophone(sounds or []), pacer, sound_origin_us)
    elif b == "pyaudio":
        from hal.audio_pi import PyAudioMicrophone

        microphone = attempt(
            "microphone", lambda: PyAudioMicrophone(clock, cfg.opt("microphone", "device", None))
        )

    speaker: Speaker
    if cfg.backends["speaker"] == "pyaudio":
        from hal.audio_pi import PyAudioSpeaker

        speaker = attempt("speaker", lambda: PyAudioSpeaker(cfg.opt("speaker", "device", None)))
        if speaker is None:
            speaker = SimSpeaker(clock)  # silent: the fault is recorded, prompts are logged
    else:
        speaker = SimSpeaker(clock)

    factory = _mock_factory() if cfg.backends["gpio"] == "mock" else _pi_factory()
    pins = PinMap(**{k: v for k, v in cfg.options["gpio"].items()})
    buttons = GpioButtons(factory, clock, pins, name=cfg.backends["gpio"])
    indicators = GpioIndicators(factory, pins, name=cfg.backends["gpio"])

    gps: Gps | None = None
    if cfg.backends["gps"] == "sim":
        gps = SimGps()
    elif cfg.backends["gps"] == "serial":
        gps = attempt(
            "gps",
            lambda: SerialGps(
                cfg.opt("gps", "port", "/dev/serial0"), int(cfg.opt("gps", "baud", 9600))
            ),
        )

    battery: Battery | None = None
    if cfg.backends["battery"] == "sim":
        battery = SimBattery()
    elif cfg.backends["battery"] == "max17048":
        battery = attempt("battery", lambda: Max17048(busno=int(cfg.opt("battery", "bus", 1))))

    storage: Storage = (
        SimStorage(store_path) if cfg.backends["storage"] == "sim" else FsStorage(store_path)
    )

    rtc: Rtc | None = None
    if cfg.backends["rtc"] == "sim":
        rtc = SimRtc()
    elif cfg.backends["rtc"] == "linux":
        device = cfg.options["rtc"].get("device")
        rtc = LinuxRtc.at(Path(device)) if device else LinuxRtc.find()

    return Devices(
        camera,
        microphone,
        speaker,
        indicators,
        buttons,
        gps,
        battery,
        storage,
        rtc,
        absent=absent,
        pin_factory=factory,
        pins=pins,
    )
