"""The recording part of the demo: the simulated unit runs firmware/demo.toml
(record, still, pause, resume with a spoken reason heard by the VAD, evidence
mark, stop) through the real recorder: state machine, capture, sealing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .recording import run_scenario
from .scenario import Scenario, load
from .unitconfig import UnitConfig

DEMO = Path(__file__).resolve().parent / "demo.toml"
SHOWN = ("capture started", "capture stopped", "record ", "sealed ", "still ", "clock stepped")


def record_demo(
    unit: Path, work: Path, scenario: Scenario | None = None, config: UnitConfig | None = None
) -> Iterator[tuple[str, str]]:
    """`scenario` and `config`: the demo's, already checked (loaded here when not given)."""
    lines: list[str] = []
    scenario = scenario or load(DEMO, work)
    rec = run_scenario(unit, scenario, log=lines.append, config=config)
    for line in lines:
        if line.startswith(SHOWN):
            word, _, rest = line.partition(" ")
            yield word, rest
    yield "prompts", ", ".join(rec.prompts_played)
