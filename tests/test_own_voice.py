"""The unit's own voice is not the officer's note: a simulated unit whose
microphone hears its speaker (`speaker_echo_db`, through a room response
and a small speaker's clipping) is paused and resumed, and plays "state the
reason" in English or Chinese as a real unit does. The runtime takes the
speaker's reports of what it played, and when, as the echo reference
(docs/CAPTURE.md, "The unit's own voice").

Heard alone, the prompt is no note (`given` false). The officer's real
speech (espeak-ng) starting during the prompt or after it is a note: the
part over the prompt counts where the voice stands 10 dB above the unit's
own sound (here it does not: the speaker is as loud as the voice), the rest
in full."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from firmware.devices import parse_devices
from firmware.recording import run_scenario
from firmware.scenario import parse
from sealing.verify import verify_store

from .conftest import make_unit

RESUME_S = 6.0
# About 10 s: an officer who starts during the prompt says more than 3 s after it
NOTE = {
    "en": "I paused the recording because the driver asked to speak to his lawyer in private, "
    "and I am resuming now because he has come back to the car.",
    "zh": "我暂停了录像，因为司机要求和他的律师私下通话。现在他回到车上，所以我继续录像。",
}
VOICE = {"en": "en", "zh": "cmn"}
PROMPT_S = {"en": 0.3 + 4.05, "zh": 0.3 + 6.63}  # tone_start, then state_reason


def _scenario(lang: str, officer_from_s: float | None) -> dict[str, Any]:
    sounds = []
    if officer_from_s is not None:
        at = RESUME_S + officer_from_s
        sounds.append({"t": at, "speech": NOTE[lang], "voice": VOICE[lang], "seconds": 14})
    return {
        "seconds": RESUME_S + 17,
        "size": "320x180",
        "clock": "synced",
        "segment_seconds": 8,
        "prerecord_seconds": 1,
        "speaker_echo_db": 0,  # the speaker beside the microphone, as loud as it plays
        "at": [
            {"t": 1, "press": "record"},
            {"t": 3, "press": "function"},  # pause
            {"t": RESUME_S, "press": "record"},  # resume: the unit asks for the reason
            {"t": RESUME_S + 16, "hold": "record"},  # stop: a note still awaited is judged
        ],
        "sound": sounds,
    }


def _note(tmp_path: Path, lang: str, officer_from_s: float | None) -> dict[str, Any]:
    unit = make_unit(tmp_path / "unit")
    devices = parse_devices(
        {
            "camera": {"backend": "sim", "size": "320x180"},
            "storage": {"backend": "sim"},
            "speaker": {"backend": "sim", "language": lang},
        }
    )
    rec = run_scenario(
        unit.path,
        parse(_scenario(lang, officer_from_s), tmp_path),
        log=lambda line: None,
        devices=devices,
    )
    assert "state_reason" in rec.prompts_played
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    (note,) = [r["body"] for r in report.records if r["type"] == "resume_note"]
    return note


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_prompt_heard_alone_is_not_a_note(tmp_path: Path, lang: str) -> None:
    note = _note(tmp_path, lang, None)
    assert note["given"] is False and note["speech_ms"] == 0, note


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("start", ["during", "after"])
def test_the_officer_speaking_during_or_after_the_prompt_is_a_note(
    tmp_path: Path, lang: str, start: str
) -> None:
    officer_from_s = 2.0 if start == "during" else PROMPT_S[lang] + 1.0
    note = _note(tmp_path, lang, officer_from_s)
    assert note["given"] is True and note["speech_ms"] >= 3000, note
