"""The standard phrases (R5) exist in Chinese and English as real speech."""

from __future__ import annotations

from pathlib import Path

import pytest

from capture.vad import SpeechMeter
from firmware.prompts import PHRASES, TONES, build_all, pcm


def test_every_phrase_renders_in_both_languages(tmp_path: Path) -> None:
    wavs = build_all(tmp_path)
    assert len(wavs) == 2 * len(PHRASES)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_start_notice_is_heard_as_speech(tmp_path: Path, lang: str) -> None:
    data = pcm("start_notice", lang, tmp_path)
    meter = SpeechMeter()
    meter.feed(data, 0)
    assert meter.seconds(0, 10**9) >= 1.5


def test_tones_and_bad_names(tmp_path: Path) -> None:
    assert len(pcm("beep5", "en", tmp_path)) == 2 * int(16000 * 0.1) * 10
    assert set(TONES) >= {"tone_start", "tone_stop", "beep5"}
    with pytest.raises(KeyError):
        pcm("sing", "en", tmp_path)
    with pytest.raises(ValueError, match="language"):
        pcm("start_notice", "fr", tmp_path)
