"""Spot checks (S0 art. 28-29, S1 art. 17, S4 art. 14): a supervisor draws
a random sample of recordings over a period, a unit or an officer, plays
each and judges it against S0 art. 29's four questions; the judgements are
the check ledger (检查台账) that feeds performance review. Pure rules, no
I/O: the page (dock/compliance/web/spot_checks.py) keeps draws and
judgements in the index.

The draw is reproducible: the population (every recording the drawer may
see that the period, unit and officer select, in (serial, recording)
order) and the seed are stored with it, and `draw(population, size, seed)`
gives the same sample again. Python's random.Random with a string seed is
stable across Python versions (its seeding is documented as version 2).
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .texts import Msg, msg

SIZE_MAX = 200
SEED_MAX = 64

# S0 art. 29: what each sampled recording is judged against
ITEMS = ("recorded", "conduct", "handling", "care")
ITEM_NAMES: dict[str, Msg] = {
    "recorded": msg("recorded as the rules require"),
    "conduct": msg("language and conduct as the rules require"),
    "handling": msg("exported, handed over, kept and used as the rules require"),
    "care": msg("the unit kept and maintained"),
}
VERDICTS = ("yes", "no", "na")
VERDICT_NAMES: dict[str, Msg] = {
    "yes": msg("yes"),
    "no": msg("no"),
    "na": msg("not applicable"),
}

Recording = tuple[str, int]  # (serial, the record_start's seq)


class CheckRefused(ValueError):
    """args[0]: one line (a Msg) naming what was refused and why."""


def new_seed() -> str:
    return secrets.token_hex(8)


def checked_seed(text: str) -> str:
    seed = text.strip()
    if not seed:
        return new_seed()
    if len(seed) > SEED_MAX or not seed.isprintable():
        raise CheckRefused(msg("seed: want at most %(n)s printable characters", n=SEED_MAX))
    return seed


def checked_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not 1 <= size <= SIZE_MAX:
        raise CheckRefused(msg("sample size: want a whole number from 1 to %(n)s", n=SIZE_MAX))
    return size


def draw(population: Sequence[Recording], size: int, seed: str) -> list[Recording]:
    """`size` recordings (all, when there are fewer) drawn without
    replacement; the same population, size and seed give the same sample."""
    ordered = sorted(population)
    return sorted(random.Random(seed).sample(ordered, min(size, len(ordered))))


def to_json(recordings: Sequence[Recording]) -> str:
    return json.dumps([[s, r] for s, r in recordings], ensure_ascii=False)


def from_json(text: str) -> list[Recording]:
    return [(str(s), int(r)) for s, r in json.loads(text)]


@dataclass(frozen=True)
class Judgement:
    verdicts: dict[str, str]  # item -> verdict
    remark: str

    @property
    def passed(self) -> bool:
        return "no" not in self.verdicts.values()


def judgement(form: dict[str, Any]) -> Judgement:
    """The four verdicts and a remark from a form; a "no" needs a remark
    (what was wrong is what performance review reads)."""
    verdicts = {}
    for item in ITEMS:
        v = str(form.get(item, ""))
        if v not in VERDICTS:
            raise CheckRefused(msg("%(item)s: want yes, no or not applicable", item=item))
        verdicts[item] = v
    remark = " ".join(str(form.get("remark", "")).split())
    if len(remark) > 500 or not remark.isprintable():
        raise CheckRefused(msg("remark: at most 500 printable characters"))
    if "no" in verdicts.values() and not remark:
        raise CheckRefused(msg("a recording judged not as required needs a remark saying why"))
    return Judgement(verdicts, remark)
