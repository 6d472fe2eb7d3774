"""The GOP signer finds NAL units by position (`capture.nal.spans`, hashed as
views): the same units as the Annex B rule written out with a regex split,
and as the verifier's stream reader (`AnnexB`) gives them."""

from __future__ import annotations

import random
import re

import pytest

from capture.nal import AnnexB, spans

_START = re.compile(rb"\x00\x00\x01")


def _rule(au: bytes) -> list[bytes]:
    parts = _START.split(au)[1:]
    return [p.rstrip(b"\x00") for p in parts if p.rstrip(b"\x00")]


class _Units:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def nal(self, unit: bytes) -> None:
        self.got.append(unit)

    def end(self) -> None:
        pass


def _read(au: bytes, rng: random.Random) -> list[bytes]:
    units = _Units()
    reader = AnnexB(units)  # type: ignore[arg-type]
    i = 0
    while i < len(au):  # fed in pieces, as a stream arrives
        n = rng.randrange(1, 8)
        reader.feed(au[i : i + n])
        i += n
    reader.end()
    return units.got


@pytest.mark.parametrize("seed", range(5))
def test_the_spans_are_the_rules_units(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(4000):  # start codes, zero runs and emulation bytes, densely
        au = bytes(rng.choice((0, 0, 0, 1, 3, 0x65, 0x41, 0xFF)) for _ in range(rng.randrange(40)))
        view = memoryview(au)
        units = [bytes(view[a:b]) for a, b in spans(au)]
        assert units == _rule(au)
        assert units == _read(au, rng)
