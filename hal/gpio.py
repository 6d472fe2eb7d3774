"""Buttons, LEDs, buzzer, vibration motor, tamper switch and trigger input,
as gpiozero devices on an explicit pin factory (never the global one).

Real: gpiozero's default factory on a Pi (lgpio, or RPi.GPIO on a Pi 4).
Simulation and tests: `gpiozero.pins.mock.MockFactory`, pins driven by the
scenario or the test. Only the mock factory has run here.

Gestures: gpiozero reports edges; `Gestures` turns them into press, hold and
double press with its own debounce, because MockPin does not simulate
contact bounce (platform-facts.md) and the rule "a stop needs a hold, never
a tap" must not depend on the pin library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpiozero import LED, Button, Buzzer, DigitalOutputDevice


@dataclass(frozen=True)
class PinMap:
    """BCM pin numbers (docs/HARDWARE.md)."""

    record: int = 17
    function: int = 27
    photo: int = 22
    tamper: int = 23
    trigger: int = 24
    led_power: int = 5  # green
    led_audio: int = 6  # yellow
    led_video: int = 13  # red
    buzzer: int = 19
    vibration: int = 26


@dataclass
class Gestures:
    """Edges in, gestures out. Buttons in `doubles` (the function button) give
    press (released before `hold_s`, no second press within `double_s`),
    double, and hold; the others give press at once on the down edge (so a
    record press starts recording without waiting to rule out a double) and
    hold after `hold_s`. Edges closer than `debounce_s` to the previous edge
    are bounce and ignored."""

    emit: Callable[[str, str, float], None]  # (gesture, button, t)
    doubles: frozenset[str] = frozenset({"function"})
    hold_s: float = 1.5
    double_s: float = 0.4
    debounce_s: float = 0.03
    _down: dict[str, float] = field(default_factory=dict)
    _last_edge: dict[str, float] = field(default_factory=dict)
    _held: set[str] = field(default_factory=set)
    _pending: dict[str, float] = field(default_factory=dict)  # a press awaiting a second

    def _bounce(self, button: str, t: float) -> bool:
        last = self._last_edge.get(button)
        self._last_edge[button] = t
        return last is not None and t - last < self.debounce_s

    def down(self, button: str, t: float) -> None:
        if self._bounce(button, t) or button in self._down:
            return
        self._down[button] = t
        if button not in self.doubles:
            self.emit("press", button, t)

    def up(self, button: str, t: float) -> None:
        if self._bounce(button, t) or button not in self._down:
            return
        self._down.pop(button)
        if button in self._held:
            self._held.discard(button)
            return
        if button not in self.doubles:
            return  # its press went out on the down edge
        first = self._pending.pop(button, None)
        if first is not None and t - first <= self.double_s:
            self.emit("double", button, t)
        else:
            self._pending[button] = t

    def poll(self, t: float) -> None:
        """Call often: fires holds and presses whose double-press window ended."""
        for button, since in list(self._down.items()):
            if button not in self._held and t - since >= self.hold_s:
                self._held.add(button)
                self.emit("hold", button, t)
        for button, at in list(self._pending.items()):
            if t - at > self.double_s:
                del self._pending[button]
                self.emit("press", button, at)


class UnitPins:
    """The unit's GPIO devices on `pin_factory`."""

    def __init__(self, pin_factory: Any, gestures: Gestures, now: Callable[[], float],
                 pins: PinMap | None = None) -> None:
        self.pins = p = pins or PinMap()
        f = {"pin_factory": pin_factory}
        self.buttons = {name: Button(getattr(p, name), **f)
                        for name in ("record", "function", "photo")}
        for name, b in self.buttons.items():
            b.when_pressed = lambda n=name: gestures.down(n, now())
            b.when_released = lambda n=name: gestures.up(n, now())
        self.tamper = Button(p.tamper, **f)
        self.trigger = Button(p.trigger, **f)
        self.led_power = LED(p.led_power, **f)
        self.led_audio = LED(p.led_audio, **f)
        self.led_video = LED(p.led_video, **f)
        self.buzzer = Buzzer(p.buzzer, **f)
        self.vibration = DigitalOutputDevice(p.vibration, **f)
        self.led_power.on()

    def show(self, video: bool, audio: bool) -> None:
        (self.led_video.on if video else self.led_video.off)()
        (self.led_audio.on if audio else self.led_audio.off)()

    def pulse(self, seconds: float = 0.2) -> None:
        """Tone and vibration at a start or stop (background blink, once)."""
        self.buzzer.blink(on_time=seconds, off_time=0, n=1, background=True)
        self.vibration.blink(on_time=seconds, off_time=0, n=1, background=True)

    def close(self) -> None:
        for dev in [*self.buttons.values(), self.tamper, self.trigger, self.led_power,
                    self.led_audio, self.led_video, self.buzzer, self.vibration]:
            dev.close()
