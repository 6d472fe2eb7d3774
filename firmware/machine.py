"""The recorder's brain: a pure state machine. Events in, actions out; no I/O,
no clocks, no threads. The daemon turns the world into events and carries
out the actions. docs/STATES.md is the table a reader checks this against.

States: idle, recording, paused. Alongside the state: whether a spoken
resume note is awaited (R12), the clock's state (R3, R8), and warnings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

# -- events -------------------------------------------------------------------


@dataclass(frozen=True)
class Press:
    button: str  # record | function | photo
    at_us: int


@dataclass(frozen=True)
class Hold:
    button: str
    at_us: int


@dataclass(frozen=True)
class DoublePress:
    button: str
    at_us: int


@dataclass(frozen=True)
class Trigger:
    """A holster or vehicle sensor line went active."""

    source: str
    at_us: int


@dataclass(frozen=True)
class Tick:
    at_us: int
    speech_s: float = 0.0  # speech heard since the note window opened (daemon's VAD)


@dataclass(frozen=True)
class Battery:
    percent: int
    minutes_left: int
    at_us: int


@dataclass(frozen=True)
class Storage:
    free_bytes: int
    total_bytes: int
    at_us: int


@dataclass(frozen=True)
class ClockStatus:
    state: str  # synced | holdover | unverified
    source: str
    at_us: int


@dataclass(frozen=True)
class Fault:
    device: str  # camera | microphone | tamper | ...
    reason: str
    at_us: int
    # gone silent without an error (the runtime's device watch): it may come
    # back by itself (Restored), so it never ends a recording on its own
    silent: bool = False


@dataclass(frozen=True)
class Restored:
    """A device that had failed delivers again (the camera after the runtime
    restarted it): its LED comes back, and it counts again when judging
    whether anything is left to record."""

    device: str  # camera | microphone
    at_us: int


@dataclass(frozen=True)
class Shutdown:
    """The daemon is asked to stop (SIGTERM, power switch)."""

    reason: str
    at_us: int


@dataclass(frozen=True)
class Unexported:
    oldest_age_s: int
    at_us: int


Event = (
    Press
    | Hold
    | DoublePress
    | Trigger
    | Tick
    | Battery
    | Storage
    | ClockStatus
    | Fault
    | Restored
    | Unexported
    | Shutdown
)

# -- actions --------------------------------------------------------------------


@dataclass(frozen=True)
class StartCapture:
    cause: str
    prerecord: bool = True  # a resume does not reach back into the pause it ends


@dataclass(frozen=True)
class StopCapture:
    cause: str
    pause: bool = False  # a pause: the file may be finished after the state changes


@dataclass(frozen=True)
class Record:
    """Append a chain record of this type and body."""

    type: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Prompt:
    """Play a sound or spoken prompt (names in docs/STATES.md)."""

    name: str


@dataclass(frozen=True)
class Hush:
    """Stop what the speaker is still saying: a pause or stop ends the unit's
    announcement (the opening notice is not read on into a pause)."""


@dataclass(frozen=True)
class Indicate:
    """LEDs and the repeating warning pattern (national convention: power
    green, audio recording yellow, video recording red)."""

    video: bool
    audio: bool
    warning: str | None  # None | clock | note_missing | battery | storage | export_overdue


@dataclass(frozen=True)
class TakeStill:
    pass


Action = StartCapture | StopCapture | Record | Prompt | Hush | Indicate | TakeStill

# -- policy and state -----------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    note_min_speech_s: float = 3.0
    note_window_s: float = 20.0
    note_reprompts: int = 1
    clock_policy: str = "flag"  # flag | refuse
    trigger_starts: bool = False
    record_on_power_on: bool = False  # start recording when the unit comes up
    battery_warn_minutes: int = 5
    battery_critical_percent: int = 2
    storage_warn_fraction: float = 0.10
    storage_floor_bytes: int = 64 << 20
    unexported_warn_s: int = 24 * 3600
    clock_warn_every_s: int = 20
    # capture settings the agency sets with the rest (the machine does not use them)
    segment_s: float = 32.0  # a multiple of 8 s (capture.segmenter.segment_problem)
    prerecord_s: float = 30.0
    prerecord_audio: bool = False  # see capture.pipeline.CaptureConfig for why

    def __post_init__(self) -> None:
        for f in fields(self):
            v: Any = getattr(self, f.name)
            want = type(f.default)
            if want is bool:
                ok = isinstance(v, bool)
            elif want is int:
                ok = isinstance(v, int) and not isinstance(v, bool)
            elif want is float:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            else:
                ok = isinstance(v, want)
            if not ok:
                raise ValueError(
                    f"{f.name} = {v!r}: must be a {want.__name__}"
                    + (" (finite)" if want in (int, float) else "")
                )
        if not 1 <= self.segment_s <= 3600:
            raise ValueError("segment_s must be from 1 to 3600 seconds")
        if not 0 <= self.prerecord_s <= 120:
            raise ValueError("prerecord_s must be from 0 to 120 seconds")
        if self.clock_policy not in ("flag", "refuse"):
            raise ValueError("clock_policy must be flag or refuse")
        if self.note_min_speech_s <= 0 or self.note_window_s < self.note_min_speech_s:
            raise ValueError("the note window must be longer than the speech it needs")
        if self.note_reprompts < 0:
            raise ValueError("note_reprompts cannot be negative")


@dataclass(frozen=True)
class NoteWait:
    """A spoken reason is awaited (after a resume)."""

    since_us: int  # where the note window opened (media time)
    deadline_us: int
    reprompts_left: int
    cause: str


@dataclass(frozen=True)
class State:
    mode: str = "idle"  # idle | recording | paused
    clock: str = "unverified"
    clock_source: str = "none"
    note: NoteWait | None = None
    note_missing: bool = False
    needs_note: bool = False  # the last stop was the unit's doing: the next start is a resume
    paused_at_us: int = 0
    pause_reason: str = ""
    warnings: frozenset[str] = field(default_factory=frozenset)
    last_clock_warn_us: int = -(10**18)
    last_export_warn_us: int = -(10**18)
    video_ok: bool = True
    audio_ok: bool = True


class Machine:
    """Holds the state; `handle(event)` returns the actions for it."""

    def __init__(self, policy: Policy | None = None, state: State | None = None) -> None:
        self.policy = policy or Policy()
        self.state = state or State()

    def handle(self, event: Event) -> list[Action]:
        new, actions = step(self.policy, self.state, event)
        self.state = new
        return actions


def _indicate(s: State) -> Indicate:
    rec = s.mode == "recording"
    order = ["note_missing", "clock", "battery", "storage", "export_overdue"]
    warning = next((w for w in order if w in s.warnings), None)
    return Indicate(video=rec and s.video_ok, audio=rec and s.audio_ok, warning=warning)


def _warn(s: State, name: str, on: bool) -> State:
    w = set(s.warnings)
    (w.add if on else w.discard)(name)
    return replace(s, warnings=frozenset(w))


def _start(p: Policy, s: State, cause: str, at: int) -> tuple[State, list[Action]]:
    if s.clock == "unverified" and p.clock_policy == "refuse":
        return s, [
            Record(
                "fault", {"what": "record_refused", "reason": "clock unverified", "cause": cause}
            ),
            Prompt("clock_unverified"),
            _indicate(_warn(s, "clock", True)),
        ]
    resume = s.mode == "paused" or s.needs_note
    acts: list[Action] = [StartCapture(cause, prerecord=not resume)]
    if resume:
        acts.append(
            Record(
                "resume",
                {
                    "cause": cause,
                    "after_pause_us": at - s.paused_at_us if s.paused_at_us else None,
                    "pause_reason": s.pause_reason or None,
                },
            )
        )
        note = NoteWait(at, at + int(p.note_window_s * 1e6), p.note_reprompts, cause)
        s = replace(s, note=note)
        acts += [Prompt("tone_start"), Prompt("state_reason")]
    else:
        acts += [
            Record("record_start", {"cause": cause, "clock": s.clock}),
            Prompt("tone_start"),
            Prompt("start_notice"),
            Prompt("state_purpose"),
        ]
    s = replace(s, mode="recording", needs_note=False)
    if s.clock == "unverified":
        s = _warn(s, "clock", True)
    return s, [*acts, _indicate(s)]


def _stop(
    s: State, cause: str, at: int, *, pause: bool, unit_caused: bool, speech_s: float, p: Policy
) -> tuple[State, list[Action]]:
    acts: list[Action] = [StopCapture(cause, pause)]
    if s.note is not None:  # stopped while a note was awaited: judge what was heard
        acts.append(_note_record(s.note, at, speech_s, p))
        s = _warn(
            replace(s, note=None, note_missing=speech_s < p.note_min_speech_s),
            "note_missing",
            speech_s < p.note_min_speech_s,
        )
    if pause:
        acts.append(Record("pause", {"reason": cause}))
        s = replace(s, mode="paused", paused_at_us=at, pause_reason=cause)
    else:
        acts.append(Record("record_stop", {"cause": cause}))
        s = replace(
            s,
            mode="idle",
            paused_at_us=at if unit_caused else 0,
            pause_reason=cause if unit_caused else "",
        )
    s = replace(s, needs_note=unit_caused)
    return s, [*acts, Hush(), Prompt("tone_stop"), _indicate(s)]


def _note_record(note: NoteWait, at: int, speech_s: float, p: Policy) -> Record:
    given = speech_s >= p.note_min_speech_s
    return Record(
        "resume_note",
        {
            "given": given,
            "speech_s": round(speech_s * 1000) // 1000,
            "speech_ms": int(speech_s * 1000),
            "window_from_us": note.since_us,
            "window_to_us": at,
            "cause": note.cause,
        },
    )


def step(p: Policy, s: State, e: Event) -> tuple[State, list[Action]]:
    """The whole transition table. Pure: same (policy, state, event) -> same result."""
    if isinstance(e, Press):
        if e.button == "record" and s.mode in ("idle", "paused"):
            return _start(p, s, "button", e.at_us)
        if e.button == "function" and s.mode == "recording":
            return _stop(
                s, "to_be_stated", e.at_us, pause=True, unit_caused=False, speech_s=0.0, p=p
            )
        if e.button == "photo" and s.mode == "recording":
            return s, [TakeStill(), Prompt("shutter")]
        return s, []  # a tap that means nothing in this state: ignored, never a stop
    if isinstance(e, Hold):
        if e.button == "record" and s.mode in ("recording", "paused"):
            if s.mode == "paused":
                s2 = replace(s, mode="idle", paused_at_us=0, pause_reason="")
                return s2, [
                    Record("record_stop", {"cause": "button", "from": "paused"}),
                    Prompt("tone_stop"),
                    Prompt("end_phrase"),
                    _indicate(s2),
                ]
            s2, stopped = _stop(
                s, "button", e.at_us, pause=False, unit_caused=False, speech_s=0.0, p=p
            )
            return s2, [*stopped, Prompt("end_phrase")]
        return s, []
    if isinstance(e, DoublePress):
        if e.button == "function" and s.mode in ("recording", "paused"):
            return s, [
                Record("mark", {"flag": "evidence", "retention": "evidence"}),
                Prompt("marked"),
            ]
        return s, []
    if isinstance(e, Trigger):
        wanted = p.record_on_power_on if e.source == "power_on" else p.trigger_starts
        if wanted and s.mode == "idle":
            return _start(p, s, f"trigger:{e.source}", e.at_us)
        return s, []
    if isinstance(e, Tick):
        return _tick(p, s, e)
    if isinstance(e, Battery):
        return _battery(p, s, e)
    if isinstance(e, Storage):
        return _storage(p, s, e)
    if isinstance(e, ClockStatus):
        s2 = _warn(
            replace(s, clock=e.state, clock_source=e.source), "clock", e.state == "unverified"
        )
        acts: list[Action] = [] if s2.warnings == s.warnings else [_indicate(s2)]
        return s2, acts
    if isinstance(e, Fault):
        return _fault(p, s, e)
    if isinstance(e, Restored):
        s2 = s
        if e.device == "camera":
            s2 = replace(s, video_ok=True)
        elif e.device == "microphone":
            s2 = replace(s, audio_ok=True)
        return s2, [] if s2 == s else [_indicate(s2)]
    if isinstance(e, Shutdown):
        if s.mode == "recording":  # seal and stop; the next start is a resume
            return _stop(
                s, f"shutdown:{e.reason}", e.at_us, pause=False, unit_caused=True, speech_s=0.0, p=p
            )
        return s, []
    if isinstance(e, Unexported):
        overdue = e.oldest_age_s > p.unexported_warn_s
        s2 = _warn(s, "export_overdue", overdue)
        if overdue and e.at_us - s.last_export_warn_us >= 3600 * 10**6:
            s2 = replace(s2, last_export_warn_us=e.at_us)
            return s2, [Prompt("export_overdue"), _indicate(s2)]
        return s2, [] if s2.warnings == s.warnings else [_indicate(s2)]
    raise TypeError(f"not an event: {e!r}")


def _tick(p: Policy, s: State, e: Tick) -> tuple[State, list[Action]]:
    acts: list[Action] = []
    note = s.note
    if note is not None and s.mode == "recording":
        if e.speech_s >= p.note_min_speech_s:
            acts.append(_note_record(note, e.at_us, e.speech_s, p))
            s = _warn(replace(s, note=None, note_missing=False), "note_missing", False)
            acts += [Prompt("note_ok"), _indicate(s)]
        elif e.at_us >= note.deadline_us:
            if note.reprompts_left > 0:
                s = replace(
                    s,
                    note=replace(
                        note,
                        deadline_us=e.at_us + int(p.note_window_s * 1e6),
                        reprompts_left=note.reprompts_left - 1,
                    ),
                )
                acts.append(Prompt("state_reason"))
            else:
                acts.append(_note_record(note, e.at_us, e.speech_s, p))
                s = _warn(replace(s, note=None, note_missing=True), "note_missing", True)
                acts += [Prompt("note_missing"), _indicate(s)]
    if s.clock == "unverified" and e.at_us - s.last_clock_warn_us >= p.clock_warn_every_s * 1e6:
        s = replace(s, last_clock_warn_us=e.at_us)
        acts.append(Prompt("beep5"))
    return s, acts


def _level(
    p: Policy, s: State, *, name: str, low: bool, body: dict[str, Any], stop: bool, at: int
) -> tuple[State, list[Action]]:
    """A warning level (battery, storage): record and warn once when it goes
    low, clear when it recovers, and stop recording at the hard limit."""
    acts: list[Action] = []
    if low and name not in s.warnings:
        s = _warn(s, name, True)
        acts += [Record(f"{name}_low", body), Prompt(f"{name}_low"), _indicate(s)]
    elif not low and name in s.warnings:
        s = _warn(s, name, False)
        acts.append(_indicate(s))
    if stop and s.mode == "recording":
        # evidence is never overwritten: seal and stop, with the reason
        s, more = _stop(s, name, at, pause=False, unit_caused=True, speech_s=0.0, p=p)
        acts += more
    return s, acts


def _battery(p: Policy, s: State, e: Battery) -> tuple[State, list[Action]]:
    return _level(
        p,
        s,
        name="battery",
        low=e.minutes_left <= p.battery_warn_minutes,
        body={"percent": e.percent, "minutes_left": e.minutes_left},
        stop=e.percent <= p.battery_critical_percent,
        at=e.at_us,
    )


def _storage(p: Policy, s: State, e: Storage) -> tuple[State, list[Action]]:
    return _level(
        p,
        s,
        name="storage",
        low=e.free_bytes <= e.total_bytes * p.storage_warn_fraction,
        body={"free_bytes": e.free_bytes, "total_bytes": e.total_bytes},
        stop=e.free_bytes <= p.storage_floor_bytes,
        at=e.at_us,
    )


def _fault(p: Policy, s: State, e: Fault) -> tuple[State, list[Action]]:
    acts: list[Action] = [Record("fault", {"what": e.device, "reason": e.reason})]
    if e.device == "camera":
        s = replace(s, video_ok=False)
    elif e.device == "microphone":
        s = replace(s, audio_ok=False)
    gone = not (s.video_ok or s.audio_ok) and not e.silent
    if s.mode == "recording" and (e.device == "tamper" or gone):
        s, more = _stop(
            s, f"fault:{e.device}", e.at_us, pause=False, unit_caused=True, speech_s=0.0, p=p
        )
        acts += more
    return s, [*acts, _indicate(s)]
