"""verify-media reads containers itself (capture/mediaread.py): every damaged
or hostile variant of a signed copy gets an answer (a result, or unusable
with a reason), never an exception, and never a pass for changed bytes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.cmd_verify_media import check_file
from sealing.verify import Unusable

SIGNED = Path(__file__).parent / "vectors" / "media" / "signed.ts"


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("garbage")
    mp4 = tmp / "signed.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(SIGNED), "-c", "copy", str(mp4)],
        check=True,
        timeout=120,
    )
    return {"ts": SIGNED, "mp4": mp4}


@st.composite
def damage(draw: st.DrawFn) -> tuple[str, list[tuple[str, int, int]]]:
    kind = draw(st.sampled_from(["ts", "mp4"]))
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "cut", "insert", "zero", "ff"]),
                st.integers(0, 2**31),
                st.integers(0, 255),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return kind, steps


@settings(
    max_examples=int(os.environ.get("GARBAGE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=damage())
def test_damaged_copies_get_an_answer(
    copies: dict[str, Path], tmp_path: Path, case: tuple[str, list[tuple[str, int, int]]]
) -> None:
    kind, steps = case
    data = bytearray(copies[kind].read_bytes())
    for how, at, value in steps:
        i = at % max(1, len(data))
        if how == "flip" and data:
            data[i] ^= 1 << (value % 8)
        elif how == "cut":
            del data[i:]
        elif how == "insert":
            data[i:i] = bytes([value]) * (value % 7 + 1)
        elif how == "zero" and data:
            data[i : i + 4] = b"\x00\x00\x00\x00"[: len(data[i : i + 4])]
        elif how == "ff" and data:
            data[i : i + 4] = b"\xff\xff\xff\xff"[: len(data[i : i + 4])]
    path = tmp_path / f"copy.{kind}"
    path.write_bytes(bytes(data))
    try:
        result = check_file(path)
    except Unusable as exc:
        assert str(exc)
        return
    if result.ok and not any(how == "cut" for how, _, _ in steps):
        # (a copy cut after a group is an excerpt, and may verify.) Otherwise
        # a pass is only right for bytes the signatures do not cover
        # (container framing, audio): every signed picture is still there
        facts = json.loads(SIGNED.with_name("signed.json").read_text())["groups"]
        assert result.groups == len(facts), result
        assert result.pictures == sum(g["frames"] for g in facts), result
