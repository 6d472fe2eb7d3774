"""The unit's spoken prompts and standard phrases (R5), in Chinese and English.

Phrases are rendered with espeak-ng on the build or flashing machine into
16 kHz mono WAVs (`build_all`), which ship with the firmware; a unit never
runs espeak-ng. Tones are generated. `PromptBank` hands the speaker PCM by
name: a phrase missing from the shipped set is a fault, and a tone stands in
for it so the officer still hears something.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hal.wav import RATE, load_wav, read_pcm16, speech_wav, write_pcm16

LANGS = {"zh": "cmn", "en": "en"}
# the agency's language (link/locale.py) -> the prompts' language
PROMPT_LANGUAGE = {"zh-CN": "zh", "en": "en"}
# The opening and closing words are the regulations' own, verbatim: S0 art. 10
# (the notice before recording) and art. 15 (before it stops). The purpose
# prompt asks for what S1 art. 8 and S3 art. 9 want recorded at the start.
PHRASES: dict[str, dict[str, str]] = {
    "start_notice": {
        "zh": "您好，为保护您的合法权益，监督我们的执法行为，本次执法将全程录音录像。",
        "en": "Hello. To protect your lawful rights and interests and to supervise our "
        "enforcement, this enforcement action will be recorded in sound and video throughout.",
    },
    "state_purpose": {
        "zh": "请说明本次执法的目的、任务和执法人员情况。",
        "en": "State the purpose and task of this enforcement action, and the officers present.",
    },
    "end_phrase": {
        "zh": "本次执法结束，感谢您的配合。",
        "en": "This enforcement action is concluded. Thank you for your cooperation.",
    },
    "state_reason": {
        "zh": "录像已恢复，请说明中断的原因。",
        "en": "Recording resumed. State the reason for the interruption.",
    },
    "note_ok": {"zh": "已记录说明。", "en": "Reason recorded."},
    "note_missing": {"zh": "未听到中断原因说明。", "en": "No reason was heard."},
    "clock_unverified": {"zh": "时间未校准。", "en": "The clock is not verified."},
    "battery_low": {"zh": "电量不足。", "en": "Battery low."},
    "storage_low": {"zh": "存储空间不足。", "en": "Storage almost full."},
    "export_overdue": {
        "zh": "有记录超过二十四小时未导出。",
        "en": "Recordings older than twenty-four hours are not exported.",
    },
    "marked": {"zh": "已标记为证据。", "en": "Marked as evidence."},
}
TONES: dict[str, list[tuple[float, float]]] = {  # (Hz, seconds); 0 Hz = silence
    "tone_start": [(880, 0.15), (1320, 0.15)],
    "tone_stop": [(1320, 0.15), (880, 0.15)],
    "shutter": [(2000, 0.05)],
    "beep5": [(1000, 0.1), (0, 0.1)] * 5,
}


def tone(parts: list[tuple[float, float]]) -> bytes:
    out = []
    for hz, secs in parts:
        t = np.arange(int(secs * RATE)) / RATE
        out.append((np.sin(2 * np.pi * hz * t) * 8000 if hz else 0 * t).astype("<i2"))
    return np.concatenate(out).tobytes()


def pcm(name: str, lang: str, cache: Path) -> bytes:
    """16 kHz mono 16-bit PCM of a prompt, rendered once into `cache`."""
    if name in TONES:
        return tone(TONES[name])
    if name not in PHRASES:
        raise KeyError(f"no prompt {name!r}")
    if lang not in LANGS:
        raise ValueError(f"language must be one of {sorted(LANGS)}, not {lang!r}")
    cache.mkdir(parents=True, exist_ok=True)
    wav = cache / f"{name}.{lang}.wav"
    ready = read_pcm16(wav) if wav.exists() else None
    if ready is not None:
        return ready
    # espeak-ng speaks at 22.05 kHz: resampled once here, so the file that
    # ships is the unit's own format and it reads it without a decoder
    spoken = wav.with_name(wav.name + ".espeak")
    speech_wav(PHRASES[name][lang], spoken, voice=LANGS[lang])
    data = load_wav(spoken).astype("<i2").tobytes()
    write_pcm16(wav, data)
    spoken.unlink()
    return data


def build_all(cache: Path) -> list[Path]:
    """Render every phrase in every language (the build step)."""
    for name in PHRASES:
        for lang in LANGS:
            pcm(name, lang, cache)
    return sorted(cache.glob("*.wav"))


@dataclass
class PromptBank:
    """Prompt PCM from `directory` (`<name>.<lang>.wav`), loaded once each.
    `render` lets a simulated unit make a missing phrase with espeak-ng on
    this (build) machine; a real unit has it off."""

    directory: Path
    language: str = "en"
    render: bool = False
    _cache: dict[str, bytes] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)

    def preload(self) -> None:
        """Every prompt into memory now, so none is read from the card (or, on
        a simulated unit, rendered) on the loop at the moment it is due."""
        for name in (*TONES, *PHRASES):
            self.pcm(name)

    def pcm(self, name: str) -> bytes:
        """The prompt's PCM; a missing phrase gives a stand-in tone and is
        remembered in `missing` (the caller records the fault once)."""
        if name in self._cache:
            return self._cache[name]
        if name in TONES:
            data = tone(TONES[name])
        elif name not in PHRASES:
            raise KeyError(f"no prompt {name!r}")
        elif self.render:
            data = pcm(name, self.language, self.directory)
        else:
            wav = self.directory / f"{name}.{self.language}.wav"
            if wav.exists():
                # shipped at 16 kHz (pcm()); a card flashed before that: decoded
                data = read_pcm16(wav) or load_wav(wav).astype("<i2").tobytes()
            else:
                self.missing.add(name)
                data = tone([(600, 0.3), (0, 0.1), (600, 0.3)])
        self._cache[name] = data
        return data
