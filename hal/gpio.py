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

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpiozero import LED, Buzzer, DigitalInputDevice, DigitalOutputDevice

from .pacing import Clock
from .ports import Blink, Lights, OnGesture


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
    buzzer: int = 12  # not 19: GPIO 18-21 are I2S (19 is LRCLK) for an I2S microphone
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


BUTTONS = ("record", "function", "photo")
LINES = ("tamper", "trigger")  # level inputs: active / inactive


class GpioButtons:
    """The Buttons port on gpiozero input devices. Edges arrive on gpiozero's pin
    thread (synchronously inside `drive_low()` on a MockPin); gestures are
    timed on the unit's monotonic clock and handed to `on_gesture` from
    whichever thread made them (the pin's, or the caller of `poll`)."""

    def __init__(
        self, pin_factory: Any, clock: Clock, pins: PinMap | None = None, name: str = "gpio"
    ) -> None:
        self.pins = p = pins or PinMap()
        self.clock, self.name = clock, name
        self._lock = threading.Lock()
        self._on: OnGesture | None = None
        self.gestures = Gestures(self._emit)
        # DigitalInputDevice, not Button: holds are timed here (Gestures), and
        # each Button keeps a thread of its own waking ten times a second to
        # time holds nobody asked for (gpiozero HoldThread); pulled up, as a
        # Button is: a press connects the line to ground
        f = {"pin_factory": pin_factory, "pull_up": True}
        self.buttons = {n: DigitalInputDevice(getattr(p, n), **f) for n in (*BUTTONS, *LINES)}

    def _now_s(self) -> float:
        return self.clock.monotonic_ns() / 1e9

    def _emit(self, gesture: str, line: str, t: float) -> None:
        if self._on is not None:
            self._on(gesture, line, round(t * 1e6))

    def start(self, on_gesture: OnGesture) -> None:
        self._on = on_gesture
        for n in BUTTONS:
            self.buttons[n].when_activated = lambda n=n: self._edge(n, True)
            self.buttons[n].when_deactivated = lambda n=n: self._edge(n, False)
        for n in LINES:
            self.buttons[n].when_activated = lambda n=n: on_gesture("active", n, self._us())
            self.buttons[n].when_deactivated = lambda n=n: on_gesture("inactive", n, self._us())

    def _us(self) -> int:
        return self.clock.monotonic_ns() // 1000

    def _edge(self, button: str, down: bool) -> None:
        with self._lock:
            (self.gestures.down if down else self.gestures.up)(button, self._now_s())

    def poll(self) -> None:
        with self._lock:
            self.gestures.poll(self._now_s())

    def close(self) -> None:
        for b in self.buttons.values():
            b.close()


class GpioIndicators:
    """The Indicators port on gpiozero outputs: three LEDs, a buzzer and a
    vibration motor. Patterns run on gpiozero's own background threads
    (`blink(background=True)`), so nothing here blocks the caller."""

    def __init__(self, pin_factory: Any, pins: PinMap | None = None, name: str = "gpio") -> None:
        p = pins or PinMap()
        self.name = name
        f = {"pin_factory": pin_factory}
        self.leds = {
            "power": LED(p.led_power, **f),
            "audio": LED(p.led_audio, **f),
            "video": LED(p.led_video, **f),
        }
        self.buzzer = Buzzer(p.buzzer, **f)
        self.vibration = DigitalOutputDevice(p.vibration, **f)
        self._shown: dict[str, Blink | None] = {}

    @staticmethod
    def _drive(dev: Any, pattern: Blink | None) -> None:
        if pattern is None:
            dev.off()
        elif pattern.off_s == 0 and pattern.n == 0:
            dev.on()
        else:
            dev.blink(
                on_time=pattern.on_s, off_time=pattern.off_s, n=pattern.n or None, background=True
            )

    def show(self, lights: Lights) -> None:
        for led in ("power", "audio", "video"):
            want = getattr(lights, led)
            if self._shown.get(led, "unset") != want:  # a blink restarts only on a change
                self._shown[led] = want
                self._drive(self.leds[led], want)

    def buzz(self, pattern: Blink) -> None:
        self._drive(self.buzzer, pattern)

    def vibrate(self, pattern: Blink) -> None:
        self._drive(self.vibration, pattern)

    def close(self) -> None:
        for dev in [*self.leds.values(), self.buzzer, self.vibration]:
            dev.close()
