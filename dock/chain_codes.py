"""The chain's codes as people read them: why a recording started, stopped
or paused, which device failed, what a mark says, the clock's state.

A code is the unit's word for a thing (`to_be_stated`, `fault:camera`);
these tables give each known code its msgid, which the catalog translates.
A code not listed here is chain text and is shown exactly as recorded:
the dock never guesses what a unit meant.
"""

from __future__ import annotations

from .texts import Msg, msg

CAUSES: dict[str, Msg] = {
    "button": msg("the officer pressed the button"),
    "to_be_stated": msg("reason to be stated on resuming"),
    "battery": msg("battery exhausted"),
    "storage": msg("storage full"),
    "tamper": msg("tampering detected"),
    "recording": msg("recording"),
    "power on": msg("power on"),
    "docked": msg("docked"),
    "selftest": msg("self-test"),
    "export-serve": msg("export service"),
    "release tool": msg("release tool"),
    "test done": msg("test finished"),
}
# `<prefix>:<detail>`: the detail is itself a code (a device) or chain text
PREFIX_MSGS = {
    "fault": lambda d: msg("fault: %(detail)s", detail=d),
    "trigger": lambda d: msg("trigger: %(detail)s", detail=d),
    "shutdown": lambda d: msg("shut down: %(detail)s", detail=d),
}
DEVICES: dict[str, Msg] = {
    "camera": msg("camera"),
    "microphone": msg("microphone"),
    "speaker": msg("speaker"),
    "storage": msg("storage"),
    "gps": msg("GPS receiver"),
    "clock": msg("clock"),
    "rtc": msg("real-time clock"),
    "battery": msg("battery"),
    "tamper": msg("tampering"),
    "espeak": msg("speech synthesiser"),
    "export": msg("export to the dock"),
    "receipt_refused": msg("dock's receipt refused"),
    "record_refused": msg("recording refused"),
    "still": msg("still photo"),
    "still_exif": msg("still photo metadata"),
    "watermark": msg("watermark"),
    "audio_gap": msg("gap in the sound"),
}
FLAGS: dict[str, Msg] = {
    "evidence": msg("evidence"),
    "supervision": msg("supervision"),
    "case": msg("case file"),
    "dispute": msg("dispute"),
    "long_term": msg("long-term"),
}
CLOCK_STATES: dict[str, Msg] = {
    "synced": msg("synchronised"),
    "holdover": msg("holdover"),
    "unverified": msg("unverified"),
}
CLOCK_SOURCES: dict[str, Msg] = {
    "gps": msg("GPS"),
    "dock": msg("dock"),
    "rtc": msg("real-time clock"),
    "system": msg("system clock"),
    "none": msg("none"),
}


ENDED_BY: dict[str, Msg] = {
    "record_stop": msg("stop"),
    "boot": msg("reboot"),
    "power_loss": msg("power loss"),
}


def ended_by(code: object) -> Msg | str:
    """What ended a recording (None: nothing yet)."""
    if code is None:
        return msg("still recording when pulled")
    return ENDED_BY.get(str(code), str(code))


def cause(code: object) -> Msg | str:
    """A start, stop, pause or resume cause, or a pause reason."""
    text = "?" if code is None else str(code)
    if text in CAUSES:
        return CAUSES[text]
    prefix, sep, detail = text.partition(":")
    if sep and prefix in PREFIX_MSGS:
        return PREFIX_MSGS[prefix](DEVICES.get(detail, detail))
    return text


def device(code: object) -> Msg | str:
    text = "?" if code is None else str(code)
    return DEVICES.get(text, text)


def flag(code: object) -> Msg | str:
    text = "?" if code is None else str(code)
    return FLAGS.get(text, text)


def clock_state(code: object) -> Msg | str:
    text = "?" if code is None else str(code)
    return CLOCK_STATES.get(text, text)


def clock_source(code: object) -> Msg | str:
    text = "?" if code is None else str(code)
    return CLOCK_SOURCES.get(text, text)
