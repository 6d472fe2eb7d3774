"""The unit's spoken prompts and standard phrases (R5), in Chinese and English.

Made at build time (or on first use) with espeak-ng into 16 kHz WAVs under a
cache directory; tones are generated. On the Pi they are played through the
speaker backend; in simulation the speaker records the prompt's name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hal.microphone_sim import RATE, load_wav, speech_wav

LANGS = {"zh": "cmn", "en": "en"}
PHRASES: dict[str, dict[str, str]] = {
    "start_notice": {
        "zh": "我是执法人员，现在依法对执法过程进行全程录音录像。",
        "en": "I am a law enforcement officer. This enforcement action is being recorded "
              "in sound and video, as the law requires.",
    },
    "end_phrase": {
        "zh": "执法记录结束。",
        "en": "End of the enforcement recording.",
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
    "export_overdue": {"zh": "有记录超过二十四小时未导出。",
                       "en": "Recordings older than twenty-four hours are not exported."},
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
    if not wav.exists():
        speech_wav(PHRASES[name][lang], wav, voice=LANGS[lang])
    return load_wav(wav).astype("<i2").tobytes()


def build_all(cache: Path) -> list[Path]:
    """Render every phrase in every language (the build step)."""
    for name in PHRASES:
        for lang in LANGS:
            pcm(name, lang, cache)
    return sorted(cache.glob("*.wav"))
