"""Hostile stores and receipts, driven by hypothesis: the verifier answers
every one with a report (exit 1) or an unusable-input reason (exit 2), never
a traceback and never a hang; the receipt parser refuses with a reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealing.receipts import ReceiptRefused, parse_receipt
from sealing.verify import Unusable, verify_store

V = Path(__file__).parent / "vectors"
GOOD = V / "unit" / "store"
RECEIPT = next((GOOD / "receipts").glob("*.json")).read_bytes()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


@st.composite
def mutated_receipts(draw: st.DrawFn) -> bytes:
    outer = json.loads(RECEIPT)
    body = outer["receipt"]
    key = draw(st.sampled_from(sorted(body)))
    how = draw(st.sampled_from(["replace", "drop", "extra", "bytes", "deep"]))
    if how == "replace":
        body[key] = draw(json_values)
    elif how == "drop":
        del body[key]
    elif how == "extra":
        body[draw(st.text(max_size=8))] = draw(json_values)
    elif how == "deep":
        return b"[" * draw(st.integers(1, 100_000)) + b"]"
    else:
        raw = bytearray(RECEIPT)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] = draw(st.integers(0, 255))
        return bytes(raw)
    return _dumps(outer)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_receipts() | st.binary(max_size=300))
def test_the_receipt_parser_refuses_garbage_with_a_reason(data: bytes) -> None:
    try:
        parse_receipt(data)
    except ReceiptRefused as exc:
        assert str(exc)
        return
    assert data == RECEIPT  # only the untouched receipt parses


MUTATIONS = ["line", "flip", "cut", "insert", "swap", "file", "receipt", "fifo", "link", "dir"]


@st.composite
def hostile(draw: st.DrawFn) -> list[tuple[str, Any]]:
    n = draw(st.integers(1, 3))
    return [
        (draw(st.sampled_from(MUTATIONS)), draw(st.randoms(use_true_random=False)))
        for _ in range(n)
    ]


def _apply(store: Path, how: str, rnd: Any, draw_json: Any) -> None:
    chain = store / "chain.jsonl"
    lines = chain.read_bytes().splitlines(keepends=True) or [b"\n"]
    i = rnd.randrange(len(lines))
    if how == "line":
        lines[i] = _dumps(draw_json) + b"\n"
    elif how == "flip":
        raw = bytearray(lines[i] or b"\n")
        raw[rnd.randrange(len(raw))] ^= 1 << rnd.randrange(8)
        lines[i] = bytes(raw)
    elif how == "cut":
        lines = lines[:i] + [lines[i][: rnd.randrange(len(lines[i]) + 1)]]
    elif how == "insert":
        lines.insert(i, rnd.choice(lines))
    elif how == "swap":
        j = rnd.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif how == "file":
        name = (
            f"BC-VECTOR-01_20261118T1106{rnd.randrange(60):02d}Z_{rnd.randrange(1, 9):06d}.ts.age"
        )
        (store / "segments" / name).write_bytes(rnd.randbytes(rnd.randrange(200)))
    elif how == "receipt":
        rid = rnd.randbytes(32).hex()
        (store / "receipts" / f"{rid}.json").write_bytes(_dumps(draw_json))
    elif how == "fifo":
        target = rnd.choice(["segments", "receipts"])
        victim = next((store / target).iterdir(), None)
        name = victim.name if victim else f"{'0' * 64}.json"
        if victim and victim.is_dir() and not victim.is_symlink():
            victim.rmdir()  # an earlier step made it a folder
        elif victim:
            victim.unlink()
        os.mkfifo(store / target / name)
    elif how == "link":
        victim = next((store / "segments").iterdir(), store / "segments" / "x.ts.age")
        victim.unlink(missing_ok=True)
        victim.symlink_to("/dev/zero")
    elif how == "dir":
        victim = next((store / "receipts").iterdir(), store / "receipts" / f"{'1' * 64}.json")
        if victim.is_dir():
            return
        victim.unlink(missing_ok=True)
        victim.mkdir()
    chain.write_bytes(b"".join(lines))


@settings(
    max_examples=120,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=hostile(), junk=json_values)
def test_the_verifier_answers_every_hostile_store(
    tmp_path: Path, steps: list[tuple[str, Any]], junk: Any
) -> None:
    store = tmp_path / "s"
    if store.exists():
        shutil.rmtree(store)
    shutil.copytree(GOOD, store)
    for how, rnd in steps:
        _apply(store, how, rnd, junk)
    try:
        report = verify_store(store)
    except Unusable:
        return
    # a mutation that changed nothing the chain covers is allowed to pass
    if not report.ok:
        assert report.problems[0].message


@pytest.mark.parametrize("how", MUTATIONS)
def test_the_cli_exits_1_or_2_without_a_traceback(tmp_path: Path, how: str) -> None:
    import random

    store = tmp_path / "s"
    shutil.copytree(GOOD, store)
    _apply(store, how, random.Random(7), {"rec": [1, 2]})
    out = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "verify", str(store)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode in (0, 1, 2), out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    if how in ("line", "flip", "cut", "swap", "file", "fifo", "link"):
        assert out.returncode == 1, (how, out.stdout)
