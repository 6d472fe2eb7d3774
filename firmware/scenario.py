"""Scenario files: how QA and the tests script a simulated unit (TOML).

    seconds = 25                 # how long the unit runs
    size = "640x360"             # camera picture (1280x720 default, 1920x1080)
    clock = "synced"             # the clock at power-on: synced | unverified
    segment_seconds = 16          # a multiple of 8 s
    speaker_echo_db = -6         # the microphone hears the unit's speaker (default: not)
    prerecord_seconds = 5

    [[at]]                       # one thing that happens, at t seconds
    t = 1.0
    press = "record"             # or: hold / double = "record" | "function" | "photo"
                                 # or: trigger = "holster"
                                 # or: fault = "camera" (reason = "...")
                                 # or: battery = 3 (percent; minutes = 4)
                                 # or: storage_free_mib = 50
                                 # or: gps_time = true (a GPS fix with true UTC time)
                                 # or: gps_fix = [31.2304, 121.4737] (a position fix, with UTC)
                                 # or: clock_jump_s = -30 (the wall clock jumps)
                                 # or: freeze_s = 5 (the unit stops, as SIGSTOP;
                                 #     virtual time only)
                                 # or: quiet = "camera" | "microphone" (seconds = 3:
                                 #     it delivers nothing, then resumes by itself)

    [[sound]]                    # what the microphone hears
    t = 12.0
    speech = "I resumed because ..."   # spoken by espeak-ng; or wav = "file.wav";
    seconds = 6                        # or source = "noise:-30" | "tone:1000:-12"

docs/SCENARIO.md documents the format, its ranges and a full example. Every
value is checked here, when the file is loaded (before the unit's store is
opened): a bad one raises `ScenarioError`, `scenario FILE: key = value: reason`,
and nothing is left to be found out when its event fires.
"""

from __future__ import annotations

import math
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from capture.segmenter import segment_problem
from hal.media import DeviceFault
from hal.microphone_sim import Sound
from hal.wav import RATE, load_wav, speech_wav

from .unitconfig import SIZE_RULE, frame_size, is_number, show

ACTIONS = (
    "press",
    "hold",
    "double",
    "trigger",
    "fault",
    "battery",
    "storage_free_mib",
    "gps_time",
    "gps_fix",
    "clock_jump_s",
    "freeze_s",
    "quiet",
)
BUTTONS = ("record", "function", "photo")
# what `fault` can name: the devices the runtime reports faults for, and the tamper switch
FAULTS = (
    "camera",
    "microphone",
    "tamper",
    "gps",
    "speaker",
    "battery",
    "storage",
    "rtc",
    "watermark",
)
# keys an [[at]] may have besides t and its one action
EXTRAS: dict[str, tuple[str, ...]] = {
    "fault": ("reason",),
    "battery": ("minutes",),
    "quiet": ("seconds",),
}
QUIET = ("camera", "microphone")  # what `quiet` can name: the devices that deliver media
SOUNDS = ("speech", "wav", "source")
TOP = (
    "seconds",
    "size",
    "clock",
    "segment_seconds",
    "prerecord_seconds",
    "speaker_echo_db",
    "at",
    "sound",
)
MAX_SECONDS = 24 * 3600  # a shift; a longer scenario is a typo
MAX_JUMP_S = 100 * 365 * 24 * 3600  # an RTC reset to 1970 is a jump of decades
MAX_FREEZE_S = 3600.0
VOICE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{0,31}")  # an espeak-ng voice name, never an option


class ScenarioError(ValueError):
    """A bad scenario; the message is `scenario FILE: key = value: reason`."""


@dataclass(frozen=True)
class Happening:
    t: float
    kind: str
    value: Any
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    seconds: float
    width: int = 1280
    height: int = 720
    clock: str = "unverified"
    segment_seconds: float = 32.0
    prerecord_seconds: float = 30.0
    happenings: list[Happening] = field(default_factory=list)
    sounds: list[Sound] = field(default_factory=list)
    # the microphone hears the unit's own speaker at this level (dB to what is
    # played), as on a unit where they sit side by side; None: it does not
    speaker_echo_db: float | None = None


@dataclass(frozen=True)
class _Check:
    """Checks for one scenario file; every error names the file and the key."""

    name: str

    def bad(self, key: str, value: Any, why: str) -> ScenarioError:
        return ScenarioError(f"scenario {self.name}: {key} = {show(value)}: {why}")

    def number(self, key: str, value: Any, lo: float, hi: float, *, above: bool = False) -> float:
        """A finite number from lo (or above lo) to hi; a bool or a string is not one."""
        finite = "finite " if is_number(value) and not math.isfinite(value) else ""
        rule = (
            f"must be a {finite}number above {lo:g}, at most {hi:g}"
            if above
            else f"must be a {finite}number from {lo:g} to {hi:g}"
        )
        if not is_number(value) or finite:
            raise self.bad(key, value, rule)
        if value < lo or value > hi or (above and value == lo):
            raise self.bad(key, value, rule)
        return float(value)

    def whole(self, key: str, value: Any, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.bad(key, value, f"must be a whole number from {lo} to {hi}")
        return value

    def text(self, key: str, value: Any, max_len: int = 2000) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > max_len:
            raise self.bad(key, value, f"must be a non-empty string (at most {max_len} characters)")
        return value

    def one_of(self, key: str, value: Any, allowed: tuple[str, ...], what: str = "") -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.bad(key, value, f"{what or 'must be'} one of {', '.join(allowed)}")
        return value

    def tables(self, key: str, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.bad(key, value, f"must be [[{key}]] tables")
        return value

    def known(self, where: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
        for key, value in table.items():
            if key not in known:
                raise self.bad(f"{where}{key}", value, f"unknown key; known: {', '.join(known)}")


def load(path: Path, workdir: Path) -> Scenario:
    """Read and check a scenario file; speech is rendered into `workdir`."""
    try:
        data = tomllib.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ScenarioError(f"scenario {path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"scenario {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {path}: not valid TOML: {exc}") from None
    return parse(data, workdir, base=Path(path).parent, name=str(path))


def parse(
    data: dict[str, Any], workdir: Path, base: Path = Path("."), name: str = "<scenario>"
) -> Scenario:
    """Check a parsed scenario; `base` is where a `wav` is looked for."""
    c = _Check(name)
    for key, value in data.items():
        if key not in TOP:
            raise c.bad(key, value, f"unknown scenario key; known: {', '.join(TOP)}")
    if "seconds" not in data:
        raise ScenarioError(f"scenario {name}: seconds: missing (how long the unit runs)")
    seconds = c.number("seconds", data["seconds"], 0, MAX_SECONDS, above=True)
    size = frame_size(data.get("size", "1280x720"))
    if size is None:
        raise c.bad("size", data["size"], SIZE_RULE)
    sc = Scenario(
        seconds,
        *size,
        c.one_of("clock", data.get("clock", "unverified"), ("synced", "unverified")),
        # the capture pipeline's own limits (capture/pipeline.py CaptureConfig)
        _segment_seconds(c, data.get("segment_seconds", 32)),
        c.number("prerecord_seconds", data.get("prerecord_seconds", 30), 0, 120),
    )
    if "speaker_echo_db" in data:
        sc.speaker_echo_db = c.number("speaker_echo_db", data["speaker_echo_db"], -60, 20)
    for i, item in enumerate(c.tables("at", data.get("at", []))):
        sc.happenings.append(_happening(c, f"[[at]] #{i + 1} ", item, seconds))
    sc.happenings.sort(key=lambda h: h.t)
    for i, item in enumerate(c.tables("sound", data.get("sound", []))):
        sc.sounds.append(_sound(c, f"[[sound]] #{i + 1} ", item, seconds, workdir, base, i))
    return sc


def _segment_seconds(c: _Check, value: Any) -> float:
    seconds = c.number("segment_seconds", value, 1, 3600)
    if (why := segment_problem(seconds)) is not None:
        raise c.bad("segment_seconds", value, why)
    return seconds


def _time(c: _Check, where: str, item: dict[str, Any], seconds: float) -> float:
    if "t" not in item:
        raise ScenarioError(f"scenario {c.name}: {where}t: missing (seconds from the start)")
    return c.number(f"{where}t", item["t"], 0, seconds)  # later would never happen


def _happening(c: _Check, where: str, item: dict[str, Any], seconds: float) -> Happening:
    kinds = [k for k in ACTIONS if k in item]
    if not kinds:
        for key, value in item.items():
            if key != "t":  # most likely a misspelt or invented event
                raise c.bad(f"{where}{key}", value, f"unknown event; one of {', '.join(ACTIONS)}")
        raise ScenarioError(
            f"scenario {c.name}: {where.strip()}: needs one of {', '.join(ACTIONS)}"
        )
    if len(kinds) > 1:
        raise c.bad(
            f"{where}{kinds[1]}", item[kinds[1]], f"one event per [[at]], and it has {kinds[0]}"
        )
    kind = kinds[0]
    c.known(where, item, ("t", kind, *EXTRAS.get(kind, ())))
    t = _time(c, where, item, seconds)
    key, value = f"{where}{kind}", item[kind]
    extra: dict[str, Any] = {}
    if kind in ("press", "hold", "double"):
        c.one_of(key, value, BUTTONS, "unknown button; must be")
    elif kind == "trigger":
        c.text(key, value, 64)  # names what tripped the trigger line (holster, ...)
    elif kind == "fault":
        c.one_of(key, value, FAULTS)
        if "reason" in item:
            extra["reason"] = c.text(f"{where}reason", item["reason"], 200)
    elif kind == "battery":
        value = c.number(key, value, 0, 100)  # percent
        if "minutes" in item:
            extra["minutes"] = c.whole(f"{where}minutes", item["minutes"], 0, 6000)
    elif kind == "storage_free_mib":
        c.whole(key, value, 0, 1 << 24)  # up to 16 TiB
    elif kind == "gps_time":
        if value is not True:
            raise c.bad(key, value, "must be true (a GPS fix with UTC time)")
    elif kind == "gps_fix":
        if not isinstance(value, list) or len(value) != 2:
            raise c.bad(key, value, "must be [latitude, longitude] in degrees")
        value = (
            c.number(f"{key}[0]", value[0], -90, 90),
            c.number(f"{key}[1]", value[1], -180, 180),
        )
    elif kind == "clock_jump_s":
        value = c.number(key, value, -MAX_JUMP_S, MAX_JUMP_S)
    elif kind == "freeze_s":
        value = c.number(key, value, 0, MAX_FREEZE_S, above=True)
    elif kind == "quiet":
        c.one_of(key, value, QUIET)
        extra["seconds"] = c.number(f"{where}seconds", item.get("seconds", 3), 0, seconds,
                                    above=True)  # fmt: skip
    return Happening(t, kind, value, extra)


def _sound(
    c: _Check,
    where: str,
    item: dict[str, Any],
    seconds: float,
    workdir: Path,
    base: Path,
    i: int,
) -> Sound:
    kinds = [k for k in SOUNDS if k in item]
    if len(kinds) > 1:
        raise c.bad(
            f"{where}{kinds[1]}", item[kinds[1]], f"one sound per [[sound]], and it has {kinds[0]}"
        )
    if not kinds:
        c.known(where, item, ("t", "seconds", *SOUNDS))
        raise ScenarioError(f"scenario {c.name}: {where.strip()}: needs one of {', '.join(SOUNDS)}")
    kind = kinds[0]
    c.known(where, item, ("t", "seconds", kind, *(("voice",) if kind == "speech" else ())))
    t = _time(c, where, item, seconds)
    # 0 s would be played as 1 s by the simulated microphone
    secs = c.number(f"{where}seconds", item.get("seconds", 5), 0, MAX_SECONDS, above=True)
    key, value = f"{where}{kind}", item[kind]
    if kind == "speech":
        words = c.text(key, value)
        voice = item.get("voice", "en")
        if not isinstance(voice, str) or not VOICE.fullmatch(voice):
            raise c.bad(f"{where}voice", voice, "must be an espeak-ng voice name (en, de, ...)")
        try:  # rendered now, so a missing espeak-ng or voice is found before recording
            wav = speech_wav(words, workdir / f"speech_{i + 1}.wav", voice=voice)
        except DeviceFault as exc:
            raise c.bad(key, value, str(exc)) from None
        except (OSError, subprocess.CalledProcessError) as exc:
            said = getattr(exc, "stderr", b"") or b""
            why = said.decode(errors="replace").strip() or str(exc)
            raise c.bad(f"{where}voice", voice, f"espeak-ng failed: {why}") from None
        return Sound(t, str(wav), secs)
    if kind == "wav":
        path = base / c.text(key, value, 4096)
        if not path.is_file():
            raise c.bad(key, value, f"no such file {path}")
        try:  # decoded now: the simulated microphone renders it when the unit starts
            load_wav(path, RATE)
        except (OSError, ValueError, av.FFmpegError) as exc:
            raise c.bad(key, value, f"not a sound file ({exc})") from None
        return Sound(t, str(path), secs)
    return Sound(t, _source(c, key, value), secs)


def _source(c: _Check, key: str, value: Any) -> str:
    """silence | noise:<dBFS> | tone:<Hz>:<dBFS> (hal/microphone_sim.py renders them)."""
    rule = "must be silence, noise:<dBFS> or tone:<Hz>:<dBFS> (dBFS -120 to 0, Hz 20 to 7999)"
    kind, _, rest = value.partition(":") if isinstance(value, str) else ("", "", "")
    args = rest.split(":") if rest else []
    try:
        nums = [float(a) for a in args]
    except ValueError:
        raise c.bad(key, value, rule) from None
    if not all(math.isfinite(n) for n in nums):
        raise c.bad(key, value, rule)
    ok = (
        (kind == "silence" and not nums)
        or (kind == "noise" and len(nums) == 1 and -120 <= nums[0] <= 0)
        or (kind == "tone" and len(nums) == 2 and 20 <= nums[0] < RATE / 2 and -120 <= nums[1] <= 0)
    )
    if not ok:
        raise c.bad(key, value, rule)
    return str(value)
