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
named (firmware/unitconfig.py checks the whole unit.toml; its `ConfigError`
is `DeviceConfigError` here). A device that is configured but cannot be
opened at start (no camera on the ribbon, no sound card, no GPIO chip, no
RTC) does not stop the unit: it is left out with the reason, which the
recorder records as a fault. Whatever a device library raises while its
device is opened is that device's fault: nothing here may end the process,
or systemd restarts the recorder into the same failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hal.battery import Max17048, SimBattery
from hal.gpio import GpioButtons, GpioIndicators, PinMap
from hal.gps import SerialGps, SimGps
from hal.media import SOUND_BLOCK_MS, DeviceFault
from hal.pacing import Clock, Pacer
from hal.ports import Battery, Buttons, Camera, Gps, Indicators, Microphone, Rtc, Speaker, Storage
from hal.rtc import LinuxRtc, SimRtc
from hal.storage import FsStorage, SimStorage

from . import unitconfig
from .unitconfig import BACKENDS, ConfigError, DeviceConfig, parse_devices

if TYPE_CHECKING:
    from hal.microphone_sim import Sound

__all__ = [
    "BACKENDS",
    "DeviceConfig",
    "DeviceConfigError",
    "Devices",
    "build_devices",
    "load_devices",
    "parse_devices",
]


# The one unit.toml error (the older name is kept for callers and tests)
DeviceConfigError = ConfigError


def load_devices(unit: Path) -> DeviceConfig:
    """unit.toml `[devices]`, checked with the rest of the file."""
    return unitconfig.load(unit).devices


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
        """Every device stopped, each whatever the one before did: this runs on
        the way out, and a device that will not stop is gone anyway (its
        error would otherwise leave the others open and end in a traceback)."""
        for dev in (self.camera, self.microphone, self.speaker, self.gps):
            if dev is not None:
                with contextlib.suppress(Exception):
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


def _linux_rtc(device: str | None) -> LinuxRtc:
    rtc = LinuxRtc.at(Path(device)) if device else LinuxRtc.find()
    if not rtc.sysfs.exists():  # no RTC at all: the kernel has none of that name
        raise DeviceFault(f"no RTC: {rtc.sysfs} does not exist")
    return rtc


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
        except Exception as exc:
            absent[device] = f"{type(exc).__name__}: {exc}"
            log(f"device {device} not available: {absent[device]}")
            return None

    camera: Camera | None = None
    b = cfg.backends["camera"]
    # the simulators are imported only where one is configured: a unit's
    # real devices never load them
    if b == "sim":
        from hal.camera_sim import PacedCamera, SimCamera

        camera = attempt(
            "camera", lambda: PacedCamera(SimCamera(width, height, fps, gop=fps), pacer, fps)
        )
    elif b == "replay":
        from hal.camera_replay import ReplayCamera
        from hal.camera_sim import PacedCamera

        camera = attempt(
            "camera",
            lambda: PacedCamera(
                ReplayCamera(Path(cfg.opt("camera", "file", ""))), pacer, fps, name="replay"
            ),
        )
    elif b == "picamera2":

        def pi_camera() -> Camera:
            from hal.camera_pi import PiCamera

            return PiCamera(
                clock,
                width,
                height,
                fps,
                int(cfg.opt("camera", "bitrate", 8_000_000)),
                bool(cfg.opt("camera", "autofocus", "lens_position" not in cfg.options["camera"])),
                cfg.options["camera"].get("lens_position"),
            )

        camera = attempt("camera", pi_camera)

    microphone: Microphone | None = None
    b = cfg.backends["microphone"]
    if b == "sim":
        from hal.microphone_sim import PacedMicrophone, SimMicrophone

        microphone = attempt(
            "microphone",
            lambda: PacedMicrophone(SimMicrophone(sounds or []), pacer, sound_origin_us),
        )
    elif b == "pyaudio":

        def pyaudio_microphone() -> Microphone:
            from hal.audio_pi import PyAudioMicrophone

            return PyAudioMicrophone(
                clock,
                cfg.opt("microphone", "device", None),
                block=_frames(cfg.opt("microphone", "block_ms", SOUND_BLOCK_MS)),
            )

        microphone = attempt("microphone", pyaudio_microphone)

    speaker: Speaker | None = None
    if cfg.backends["speaker"] == "pyaudio":

        def pyaudio_speaker() -> Speaker:
            from hal.audio_pi import PyAudioSpeaker

            return PyAudioSpeaker(
                clock,
                cfg.opt("speaker", "device", None),
                block=_frames(cfg.opt("speaker", "block_ms", SOUND_BLOCK_MS)),
            )

        speaker = attempt("speaker", pyaudio_speaker)
    if speaker is None:  # configured so, or failed (the fault is recorded): prompts are logged
        from hal.microphone_sim import SimSpeaker

        speaker = SimSpeaker(pacer)

    pins = PinMap(**{k: v for k, v in cfg.options["gpio"].items()})

    def gpio() -> tuple[Any, GpioButtons, GpioIndicators]:
        factory = _mock_factory() if cfg.backends["gpio"] == "mock" else _pi_factory()
        try:  # pins claimed before a failure are given back (the chip handle with them)
            buttons = GpioButtons(factory, clock, pins, name=cfg.backends["gpio"])
            try:
                return factory, buttons, GpioIndicators(factory, pins, name=cfg.backends["gpio"])
            except Exception:
                buttons.close()
                raise
        except Exception:
            factory.close()
            raise

    got = attempt("gpio", gpio)
    if got is None:
        # No pins (no GPIO chip, no pin factory): buttons and lights on mock
        # pins nobody drives, so the unit still records what it is told to
        # (a trigger, record_on_power_on) and serves the dock. The fault is
        # recorded; it says why nothing lights.
        factory = _mock_factory()
        got = (
            factory,
            GpioButtons(factory, clock, pins, name="absent"),
            GpioIndicators(factory, pins, name="absent"),
        )
    factory, buttons, indicators = got

    gps: Gps | None = None
    if cfg.backends["gps"] == "sim":
        gps = attempt("gps", SimGps)
    elif cfg.backends["gps"] == "serial":
        gps = attempt(
            "gps",
            lambda: SerialGps(
                cfg.opt("gps", "port", "/dev/serial0"),
                int(cfg.opt("gps", "baud", 9600)),
                monotonic_ns=clock.monotonic_ns,
            ),
        )

    battery: Battery | None = None
    if cfg.backends["battery"] == "sim":
        battery = attempt("battery", SimBattery)
    elif cfg.backends["battery"] == "max17048":
        battery = attempt("battery", lambda: Max17048(busno=int(cfg.opt("battery", "bus", 1))))

    storage: Storage = (
        SimStorage(store_path) if cfg.backends["storage"] == "sim" else FsStorage(store_path)
    )

    rtc: Rtc | None = None
    if cfg.backends["rtc"] == "sim":
        rtc = attempt("rtc", SimRtc)
    elif cfg.backends["rtc"] == "linux":
        rtc = attempt("rtc", lambda: _linux_rtc(cfg.options["rtc"].get("device")))

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


def _frames(block_ms: int) -> int:
    """unit.toml's block_ms as PortAudio frames at the unit's 16 kHz."""
    from hal.audio_pi import RATE

    return RATE * block_ms // 1000
