"""Device ports: one small Protocol per device kind, the only calls the
firmware makes on a device. Written from how the real libraries behave:

* picamera2 pushes encoded frames from its encoder's own thread, with
  timestamps that restart at 0 whenever the encoder restarts;
* PortAudio (pyaudio's callback mode) pushes PCM from its own thread and
  flags input overflows; samples lost there are gone;
* gpiozero calls `when_activated` / `when_deactivated` from its pin thread;
* a speaker write blocks for as long as the sound lasts; what it played, and
  when it left the speaker, is reported back (the echo reference);
* GPS sentences arrive from a serial reader; the fuel gauge, the file system
  and the RTC are read on demand.

So every push port takes callbacks at `start` and must tolerate being
called back from any thread; the firmware queues what arrives and handles it
on its one loop thread. A backend never raises out of a callback thread: it
reports through `on_error` instead. Backends (simulated or real) implement
these and nothing else is called on them.

Timestamps handed to callbacks are microseconds on the unit's monotonic
clock (`time.monotonic_ns() // 1000` on a live unit, the virtual clock in a
scenario run): each backend maps its device's own clock onto it
(docs/HARDWARE.md says how, per backend).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .battery import BatteryReading
from .gps import Fix
from .media import EncodedFrame, PcmChunk
from .storage import Space

OnFrame = Callable[[EncodedFrame], None]
OnChunk = Callable[[PcmChunk], None]
OnError = Callable[[str], None]
# A picture before it is encoded: (pixels, format, unit monotonic us). The hook
# writes into `pixels` in place (the watermark); format names are picamera2's
# ("RGB888", "XBGR8888", "YUV420", ...).
OnPicture = Callable[[Any, str, int], None]


@dataclass(frozen=True)
class AudioGap:
    """Samples the device lost (an input overflow): where, and how many."""

    at_us: int
    samples: int


OnGap = Callable[[AudioGap], None]


@dataclass(frozen=True)
class Played:
    """A block the speaker played: its first sample left the speaker at
    `at_us` (the unit's monotonic clock), as the backend knows it."""

    at_us: int
    pcm: bytes  # 16 kHz mono 16-bit, as it was played (silence between prompts is not reported)


OnPlayed = Callable[[Played], None]


class Camera(Protocol):
    name: str  # the backend, e.g. "sim", "replay", "picamera2"

    def start(self, on_frame: OnFrame, on_error: OnError) -> None:
        """Begin delivering H.264 access units (Annex-B, SPS/PPS before each
        keyframe) from the device's own thread."""

    def stop(self) -> None: ...

    def request_keyframe(self) -> None:
        """Make one of the next few frames a keyframe."""

    def still(self) -> bytes:
        """A JPEG of the scene now (may block briefly; called on the loop thread)."""

    def overlay(self, hook: OnPicture | None, on_error: OnError) -> bool:
        """Call `hook` on every picture before it is encoded, from the camera's
        thread. False if this backend cannot (it has no pictures, only H.264).
        A hook that raises is dropped and reported once through `on_error`;
        the camera goes on recording."""


class Microphone(Protocol):
    name: str
    rate: int  # samples per second, 16-bit mono

    def start(self, on_chunk: OnChunk, on_gap: OnGap, on_error: OnError) -> None:
        """Begin delivering PCM from the device's own thread; a lost stretch
        of input is reported as a gap, never hidden by shifting later audio."""

    def stop(self) -> None: ...


class Speaker(Protocol):
    name: str

    def start(self, on_played: OnPlayed) -> None:
        """Report every block as it is played, from the device's own thread:
        the samples and the instant they left the speaker (the microphone
        hears them; the spoken-note judgement must not take them for a voice)."""

    def play(self, name: str, pcm: bytes) -> None:
        """Queue 16 kHz mono 16-bit PCM; returns at once (never blocks the caller)."""

    def busy(self) -> bool: ...

    def hush(self) -> None:
        """Drop what is queued and not yet played (the block playing ends)."""

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Blink:
    """An output pattern: `on_s` on, `off_s` off, `n` times (n=0: until changed)."""

    on_s: float
    off_s: float = 0.0
    n: int = 1


STEADY = Blink(1.0, 0.0, 0)  # on until changed


@dataclass(frozen=True)
class Lights:
    """What each LED shows: None is off, else a pattern."""

    power: Blink | None
    audio: Blink | None
    video: Blink | None


class Indicators(Protocol):
    name: str

    def show(self, lights: Lights) -> None: ...

    def buzz(self, pattern: Blink) -> None: ...

    def vibrate(self, pattern: Blink) -> None: ...

    def close(self) -> None: ...


OnGesture = Callable[[str, str, int], None]  # (gesture, line, at_us)


class Buttons(Protocol):
    """The record, function and photo buttons and the tamper and trigger lines,
    as gestures: press, hold, double (buttons); active, inactive (lines)."""

    name: str

    def start(self, on_gesture: OnGesture) -> None: ...

    def poll(self) -> None:
        """Call often (every tick): fires holds and presses whose
        double-press window has ended."""

    def close(self) -> None: ...


class Gps(Protocol):
    name: str

    def start(self, on_fix: Callable[[Fix], None], on_error: OnError) -> None: ...

    def stop(self) -> None: ...


class Battery(Protocol):
    name: str

    def read(self) -> BatteryReading: ...


class Storage(Protocol):
    name: str

    def space(self) -> Space:
        """Free and total bytes of the store's file system."""


class Rtc(Protocol):
    name: str

    def read_us(self) -> int | None:
        """UTC microseconds from the battery-backed clock, None if there is no
        RTC; raises hal.rtc.RtcInvalid when it holds no valid time."""

    def write_us(self, utc_us: int) -> None: ...
