"""The emulated smoke's speaker check (tests/emulate/smoke.py `find_prompts`):
every prompt heard sample for sample and in order, through what a starved
guest's speaker underrun does (silence, and the block being handed over
lost), and nothing taken for heard that was cut short, hushed, never
played, or lost beyond that."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.prompts import TONES, tone
from tests.emulate.run import EmuError
from tests.emulate.smoke import BLOCK, MAX_GAP, find_prompts

RATE = 16_000
OLD_MATCH = 0.9  # the whole-prompt correlation the smoke asked for until 2026-12-03


def _phrase(seed: int, seconds: float) -> np.ndarray:
    """Speech-like: noise in syllables of 0.1-0.3 s, with pauses between words."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while sum(map(len, out)) < seconds * RATE:
        n = int(rng.uniform(0.1, 0.3) * RATE)
        env = np.sin(np.linspace(0, np.pi, n))
        out.append(rng.normal(0, 3000, n) * env)
        if rng.random() < 0.3:
            out.append(np.zeros(int(0.6 * RATE)))  # a pause longer than a piece
    return np.round(np.concatenate(out)[: int(seconds * RATE)])  # as the WAV holds it


def _tone(name: str) -> np.ndarray:
    return np.frombuffer(tone(TONES[name]), "<i2").astype(np.float64)


PROMPTS = [
    ("tone_start", _tone("tone_start")),
    ("notice", _phrase(1, 4.0)),
    ("tone_stop", _tone("tone_stop")),
    ("reason", _phrase(2, 3.0)),
]


def _silence(seconds: float) -> np.ndarray:
    return np.random.default_rng(9).normal(0, 5, int(seconds * RATE))  # the card's hiss


def _capture(*parts: np.ndarray) -> bytes:
    return np.clip(np.concatenate(parts), -32768, 32767).astype("<i2").tobytes()


def _played(prompts: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
    out = [_silence(1.0)]
    for _name, p in prompts:
        out += [p, _silence(1.5)]
    return out


def _whole_match(capture: bytes, p: np.ndarray) -> float:
    """The best normalised correlation of the whole prompt (the old check)."""
    cap = np.frombuffer(capture, "<i2").astype(np.float64)
    best = 0.0
    for at in range(0, len(cap) - len(p), 40):
        seg = cap[at : at + len(p)]
        best = max(best, float(seg @ p / (np.linalg.norm(seg) * np.linalg.norm(p) + 1e-9)))
    return best


def test_every_prompt_is_found_in_order_where_it_was_played() -> None:
    capture = _capture(*_played(PROMPTS))
    found = find_prompts(capture, PROMPTS)
    assert [n for n, _ in found] == [n for n, _ in PROMPTS]
    want, at = [], 1.0
    for _name, p in PROMPTS:
        want.append(at)
        at += len(p) / RATE + 1.5
    assert [round(t, 2) for _, t in found] == pytest.approx(want, abs=0.02)


def _underrun(p: np.ndarray, at_s: float, lost: int = BLOCK, gap_s: float = 1.3) -> list:
    """`p` as a card plays it through an underrun at `at_s`: silence, then
    the prompt again `lost` samples further on."""
    cut = int(at_s * RATE)
    return [p[:cut], np.zeros(int(gap_s * RATE)), p[cut + lost :]]


@pytest.mark.parametrize("at_s", [0.23, 1.77])  # inside its first 0.5 s, later on
def test_a_phrase_through_an_underrun_is_heard(at_s: float) -> None:
    notice = PROMPTS[1][1]
    capture = _capture(*_played(PROMPTS[:1]), *_underrun(notice, at_s), *_played(PROMPTS[2:]))
    if at_s > 1:
        assert _whole_match(capture, notice) < OLD_MATCH  # what failed the smoke before
    assert [n for n, _ in find_prompts(capture, PROMPTS)] == [n for n, _ in PROMPTS]


def test_a_phrase_whose_first_samples_an_underrun_silenced_is_heard() -> None:
    """As seen 2026-12-03: the first 810 samples of a phrase played as silence."""
    notice = PROMPTS[1][1]
    start = np.flatnonzero(np.abs(notice) > 100)[0]
    silenced = np.concatenate([np.zeros(start + 810), notice[start + 810 :]])
    capture = _capture(*_played(PROMPTS[:1]), silenced, *_played(PROMPTS[2:]))
    assert [n for n, _ in find_prompts(capture, PROMPTS)] == [n for n, _ in PROMPTS]


def test_more_than_a_block_lost_at_an_underrun_is_not_heard() -> None:
    notice = PROMPTS[1][1]
    # where the lost block and the 200 samples past it are sound, not a pause
    cut = next(k for k in range(RATE, len(notice)) if notice[[k, k + BLOCK, k + BLOCK + 200]].all())
    played = _underrun(notice, cut / RATE, lost=BLOCK + 200)
    capture = _capture(*_played(PROMPTS[:1]), *played, *_played(PROMPTS[2:]))
    with pytest.raises(EmuError, match="notice .*not heard whole: more than a block lost"):
        find_prompts(capture, PROMPTS)


def test_a_phrase_missing_a_stretch_is_not_heard() -> None:
    notice = PROMPTS[1][1]
    lost = notice[: int(1.5 * RATE)], notice[int(1.6 * RATE) :]  # 0.1 s never played
    capture = _capture(*_played(PROMPTS[:1]), *lost, *_played(PROMPTS[2:]))
    with pytest.raises(EmuError, match="prompt notice began at .* not heard whole: a different"):
        find_prompts(capture, PROMPTS)


def test_a_phrase_cut_short_by_a_press_is_not_heard() -> None:
    notice = PROMPTS[1][1]
    capture = _capture(*_played(PROMPTS[:1]), notice[: int(2.5 * RATE)], *_played(PROMPTS[2:]))
    with pytest.raises(EmuError, match="prompt notice .*not heard whole"):
        find_prompts(capture, PROMPTS)


def test_a_silence_longer_than_an_underrun_is_not_taken_for_one() -> None:
    notice = PROMPTS[1][1]
    played = _underrun(notice, 1.77, gap_s=MAX_GAP / RATE + 0.5)
    capture = _capture(*_played(PROMPTS[:1]), *played, *_played(PROMPTS[2:]))
    with pytest.raises(EmuError, match="prompt notice .*not heard whole: a different sound"):
        find_prompts(capture, PROMPTS)


def test_a_hushed_tone_is_named_and_not_found_in_a_later_one() -> None:
    """The pause's tone hushed by the resume's press: the stop's own tone is
    found in its place and the prompts after it are missed, and the error
    shows where each one before was found (the smoke's failures of
    2026-12-02 named the prompt after the hushed one, and no more)."""
    prompts = PROMPTS + [("tone_stop", _tone("tone_stop"))]
    played = _played(PROMPTS[:2]) + _played(PROMPTS[3:]) + _played(prompts[4:])
    with pytest.raises(EmuError, match=r"prompt reason: .*tone_stop at 1\d\.\d s$"):
        find_prompts(_capture(*played), prompts)
