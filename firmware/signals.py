"""What the officer sees and feels: the machine's `Indicate` as LED patterns,
and the buzzer and vibration that go with each prompt (docs/STATES.md,
"Lights, sounds, vibration", is the table this follows).

LEDs (national convention): power green, audio recording yellow, video
recording red. The power LED is steady while the unit runs and blinks while
a warning stands; the audio and video LEDs are steady while that medium is
being recorded.
"""

from __future__ import annotations

from hal.ports import STEADY, Blink, Lights

from .machine import Indicate

WARNING_BLINK = Blink(0.5, 0.5, 0)
PULSE = Blink(0.2, 0.0, 1)
BEEPS_5 = Blink(0.1, 0.1, 5)
TRIPLE = Blink(0.2, 0.2, 3)
SHORT = Blink(0.1, 0.0, 1)

# prompt -> (buzzer, vibration); prompts not named here are sound only
ALERTS: dict[str, tuple[Blink | None, Blink | None]] = {
    "tone_start": (PULSE, PULSE),
    "tone_stop": (PULSE, PULSE),
    "beep5": (BEEPS_5, None),
    "note_missing": (None, TRIPLE),
    "clock_unverified": (None, TRIPLE),
    "battery_low": (None, TRIPLE),
    "storage_low": (None, TRIPLE),
    "export_overdue": (None, TRIPLE),
    "marked": (None, SHORT),
    "shutter": (None, SHORT),
}


def lights_for(ind: Indicate) -> Lights:
    return Lights(
        power=WARNING_BLINK if ind.warning else STEADY,
        audio=STEADY if ind.audio else None,
        video=STEADY if ind.video else None,
    )
