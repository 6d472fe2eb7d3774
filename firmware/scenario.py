"""Scenario files: how QA and the tests script a simulated unit (TOML).

    seconds = 25                 # how long the unit runs
    size = "640x360"             # camera picture (1280x720 default, 1920x1080)
    clock = "synced"             # the clock at power-on: synced | unverified
    segment_seconds = 10
    prerecord_seconds = 5

    [[at]]                       # one thing that happens, at t seconds
    t = 1.0
    press = "record"             # or: hold / double = "record" | "function" | "photo"
                                 # or: trigger = "holster"
                                 # or: fault = "camera" (reason = "...")
                                 # or: battery = 3 (percent; minutes = 4)
                                 # or: storage_free_mib = 50
                                 # or: gps_time = true (a GPS fix with true UTC time)
                                 # or: clock_jump_s = -30 (the wall clock jumps)

    [[sound]]                    # what the microphone hears
    t = 12.0
    speech = "I resumed because ..."   # spoken by espeak-ng; or wav = "file.wav";
    seconds = 6                        # or source = "noise:-30" | "tone:1000:-12"

docs/SCENARIO.md documents the format with a full example.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hal.microphone_sim import Sound, speech_wav

ACTIONS = (
    "press",
    "hold",
    "double",
    "trigger",
    "fault",
    "battery",
    "storage_free_mib",
    "gps_time",
    "clock_jump_s",
)
BUTTONS = ("record", "function", "photo")


class ScenarioError(ValueError):
    pass


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
    segment_seconds: float = 30.0
    prerecord_seconds: float = 30.0
    happenings: list[Happening] = field(default_factory=list)
    sounds: list[Sound] = field(default_factory=list)


def load(path: Path, workdir: Path) -> Scenario:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return parse(data, workdir, base=Path(path).parent)


def parse(data: dict[str, Any], workdir: Path, base: Path = Path(".")) -> Scenario:
    known = {"seconds", "size", "clock", "segment_seconds", "prerecord_seconds", "at", "sound"}
    unknown = set(data) - known
    if unknown:
        raise ScenarioError(f"unknown scenario keys: {sorted(unknown)}")
    seconds = data.get("seconds")
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ScenarioError("seconds must be a positive number")
    try:
        w, h = (int(v) for v in str(data.get("size", "1280x720")).split("x"))
    except ValueError:
        raise ScenarioError("size must look like 1280x720") from None
    clock = data.get("clock", "unverified")
    if clock not in ("synced", "unverified"):
        raise ScenarioError("clock must be synced or unverified")
    sc = Scenario(
        float(seconds),
        w,
        h,
        clock,
        float(data.get("segment_seconds", 30)),
        float(data.get("prerecord_seconds", 30)),
    )
    for i, item in enumerate(data.get("at", [])):
        t = item.get("t")
        kinds = [k for k in ACTIONS if k in item]
        if not isinstance(t, (int, float)) or t < 0 or len(kinds) != 1:
            raise ScenarioError(f"[[at]] #{i + 1}: needs t >= 0 and exactly one of {ACTIONS}")
        kind = kinds[0]
        value = item[kind]
        if kind in ("press", "hold", "double") and value not in BUTTONS:
            raise ScenarioError(f"[[at]] #{i + 1}: unknown button {value!r}")
        extra = {k: v for k, v in item.items() if k not in ("t", kind)}
        sc.happenings.append(Happening(float(t), kind, value, extra))
    sc.happenings.sort(key=lambda h: h.t)
    for i, item in enumerate(data.get("sound", [])):
        t = item.get("t")
        if not isinstance(t, (int, float)) or t < 0:
            raise ScenarioError(f"[[sound]] #{i + 1}: needs t >= 0")
        secs = float(item.get("seconds", 5))
        if "speech" in item:
            wav = speech_wav(
                str(item["speech"]),
                workdir / f"speech_{i + 1}.wav",
                voice=str(item.get("voice", "en")),
            )
            sc.sounds.append(Sound(float(t), str(wav), secs))
        elif "wav" in item:
            sc.sounds.append(Sound(float(t), str(base / item["wav"]), secs))
        elif "source" in item:
            sc.sounds.append(Sound(float(t), str(item["source"]), secs))
        else:
            raise ScenarioError(f"[[sound]] #{i + 1}: needs speech, wav or source")
    return sc
