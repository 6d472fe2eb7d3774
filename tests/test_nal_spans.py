"""The GOP signer finds NAL units by position (`nal_spans`, hashed as views):
the same units as the Annex B rule written out with a regex split."""

from __future__ import annotations

import random
import re

import pytest

from capture.gopsign import nal_spans, split_annexb

_START = re.compile(rb"\x00\x00\x01")


def _rule(au: bytes) -> list[bytes]:
    parts = _START.split(au)[1:]
    return [p.rstrip(b"\x00") for p in parts if p.rstrip(b"\x00")]


@pytest.mark.parametrize("seed", range(5))
def test_the_spans_are_the_rules_units(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(4000):  # start codes, zero runs and emulation bytes, densely
        au = bytes(rng.choice((0, 0, 0, 1, 3, 0x65, 0x41, 0xFF)) for _ in range(rng.randrange(40)))
        assert split_annexb(au) == _rule(au)
        view = memoryview(au)
        assert [bytes(view[a:b]) for a, b in nal_spans(au)] == _rule(au)
