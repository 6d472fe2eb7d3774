"""The published test vectors (tests/vectors, TEST keys) verify, decrypt to
the documented plaintexts, and stay byte-stable: another implementation of
docs/FORMAT.md checks itself against the same files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sealing import canonical, fss
from sealing.age import Identity
from sealing.canonical import EncodingError
from sealing.cli_verify import dock_lookup
from sealing.verify import verify_store

V = Path(__file__).parent / "vectors"


def test_vectors_verify_with_every_anchor() -> None:
    ident = Identity.parse((V / "agency-identity.TEST-ONLY.txt").read_text())
    escrow = fss.load_escrow(V / "escrow.TEST-ONLY.txt")
    report = verify_store(V / "unit", identity=ident, escrow_key=escrow)
    assert report.ok, report.problems
    statuses = [s["status"] for s in report.segments]
    assert statuses == ["released", "intact", "intact", "truncated by power loss"]
    types = [r["type"] for r in report.records]
    assert types.count("power_loss") == 2 and "release" in types
    assert {"recording_key", "recovered"} <= set(types)
    still = next(r for r in report.records if r["type"] == "still")["body"]
    assert still["still"]["source"] == "sensor"
    # the third segment was stepped back 30 s by the dock while it recorded
    seg3 = next(r for r in report.records if r["body"].get("segno") == 3)["body"]
    assert seg3["end"]["wall_us"] < seg3["start"]["wall_us"]
    assert seg3["end"]["mono_us"] > seg3["start"]["mono_us"]
    assert report.records[0]["body"]["fss_commitment"] == fss.commitment(escrow)


def test_vector_segment_decrypts_with_age_to_the_documented_plaintext() -> None:
    seg = next((V / "unit/store/segments").glob("*_000003.ts.age"))
    out = subprocess.run(
        ["age", "-d", "-i", str(V / "agency-identity.TEST-ONLY.txt"), str(seg)],
        capture_output=True,
        check=True,
    ).stdout
    assert out == b"segment two " * 7000


def test_vector_chain_hashes_link_as_documented() -> None:
    lines = (V / "unit/store/chain.jsonl").read_bytes().splitlines()
    prev = "0" * 64
    for line in lines:
        rec = canonical.decode(line)["rec"]
        assert rec["prev"] == prev
        prev = hashlib.sha256(canonical.encode(rec)).hexdigest()


CASES = json.loads((V / "bad" / "CASES.json").read_text())
STORES = sorted(n for n, c in CASES.items() if "media" not in c)
MEDIA = sorted(n for n, c in CASES.items() if "media" in c)


def _case(name: str, tmp_path: Path) -> tuple[Path, Path | None]:
    """(what to verify, the dock folder to take segments from) for a case,
    made as CASES.json says: git cannot hold a FIFO, so those are made here."""
    case = CASES[name]
    root = V / "bad" / name
    if case.get("mkfifo"):
        root = tmp_path / name
        shutil.copytree(V / "bad" / name, root, symlinks=True)
        for rel in case["mkfifo"]:
            os.mkfifo(root / rel)
    dock = root / case["segments_from"] if "segments_from" in case else None
    return root / case.get("path", "store"), dock


@pytest.mark.parametrize("name", STORES)
def test_each_bad_vector_fails_on_its_one_rule(name: str, tmp_path: Path) -> None:
    escrow = fss.load_escrow(V / "escrow.TEST-ONLY.txt")
    path, dock = _case(name, tmp_path)
    report = verify_store(path, escrow_key=escrow, find_segment=dock_lookup(dock) if dock else None)
    assert not report.ok
    assert CASES[name]["problem"] in report.problems[0].message, report.problems
    if CASES[name].get("only"):  # nothing else is wrong with it: nothing else is reported
        assert len(report.problems) == 1, report.problems


def test_bad_vectors_exit_1_through_the_cli_without_a_traceback(tmp_path: Path) -> None:
    for name in STORES:
        path, dock = _case(name, tmp_path)
        more = ["--segments-from", str(dock)] if dock else []
        out = subprocess.run(
            [sys.executable, "-m", "firmware.cli", "verify", str(path), *more],
            capture_output=True,
            text=True,
            timeout=300,  # only a hang (a FIFO opened for reading) comes near it
        )
        assert out.returncode == 1, (name, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr + out.stdout, name
        assert CASES[name]["problem"] in out.stdout, (name, out.stdout)


@pytest.mark.parametrize(
    "name",
    [
        "device_key_is_a_fifo",
        "device_key_is_a_link",
        "segments_is_a_link",
        "receipts_is_a_link",
        "dock_holds_an_extra_file",
        "dock_holds_a_partial_segment",
    ],
)
def test_the_file_vectors_break_nothing_but_their_rule(name: str, tmp_path: Path) -> None:
    """Made regular (links copied as what they point to, the FIFO replaced by
    the key, the dock's stray file taken away), each of these stores verifies:
    so the one rule is all that fails them."""
    escrow = fss.load_escrow(V / "escrow.TEST-ONLY.txt")
    root = tmp_path / name
    shutil.copytree(V / "bad" / name, root)  # links followed: their targets copied
    if name == "device_key_is_a_fifo":
        shutil.copy(V / "unit" / "store" / "device_ed25519.pub", root / "store")
    for stray in root.glob("dock/2*/*/*/*/*"):
        if stray.name == "notes.txt" or stray.name.endswith(".partial"):
            stray.unlink()
    case = CASES[name]
    dock = root / case["segments_from"] if "segments_from" in case else None
    report = verify_store(
        root / case.get("path", "store"),
        escrow_key=escrow,
        find_segment=dock_lookup(dock) if dock else None,
    )
    assert report.ok, report.problems


@pytest.mark.parametrize("name", MEDIA)
def test_each_bad_media_vector_fails_on_its_one_rule(name: str) -> None:
    from firmware.cmd_verify_media import first_problem, report_of

    r = report_of(V / "bad" / name / CASES[name]["media"], None)
    assert not r["ok"] and not r["missing_groups"]
    assert CASES[name]["problem"] in first_problem(r), r
    assert [g["status"] for g in r["runs"]].count("verified") == len(r["runs"]) - 1, r["runs"]


def test_the_dock_vector_verifies_and_notes_the_docks_work_files() -> None:
    ident = Identity.parse((V / "agency-identity.TEST-ONLY.txt").read_text())
    escrow = fss.load_escrow(V / "escrow.TEST-ONLY.txt")
    report = verify_store(
        V / "dock" / "units" / "BC-VECTOR-01",
        identity=ident,
        escrow_key=escrow,
        find_segment=dock_lookup(V / "dock"),
    )
    assert report.ok, report.problems
    # the dock holds the released segment too: a copy holds what the unit freed
    assert [s["status"] for s in report.segments] == [
        "intact",
        "intact",
        "intact",
        "truncated by power loss",
    ]
    work = [n for n in report.notes if "the dock's work file" in n]
    assert len(work) == 2 and any(".part" in n for n in work), report.notes


def test_a_line_of_exactly_8_mib_with_its_newline_is_a_record(tmp_path: Path) -> None:
    """The limit includes the newline: at it, a line is read; one byte over,
    it is refused (the vector chain_line_over_8_mib), and the writer never
    makes one."""
    from sealing.records import MAX_LINE

    from .conftest import make_unit

    unit = make_unit(tmp_path / "unit")
    store = unit.open(boot_body={"cause": "test"})
    store.append("pause", {"reason": "privacy", "pad": ""})
    chain = unit.path / "store" / "chain.jsonl"
    n = MAX_LINE - len(chain.read_bytes().splitlines(keepends=True)[-1])
    store.append("pause", {"reason": "privacy", "pad": "a" * n})
    with pytest.raises(EncodingError):
        store.append("pause", {"reason": "privacy", "pad": "a" * (n + 1)})
    store.close()
    assert len(chain.read_bytes().splitlines(keepends=True)[-1]) == MAX_LINE
    report = verify_store(unit.path, escrow_key=unit.agency.escrow)
    assert report.ok, report.problems
    assert report.records[-1]["body"]["pad"] == "a" * n


def test_the_signed_media_vector_checks_as_documented() -> None:
    from capture.gopcheck import GroupResult
    from firmware.cmd_verify_media import check_file

    facts = json.loads((V / "media" / "signed.json").read_text())
    groups: list[GroupResult] = []
    check = check_file(V / "media" / "signed.ts", groups.append)
    assert check.ok and check.serial == facts["serial"] and check.key
    assert check.key.hex() == facts["recording_key"]
    got = [
        (g.signature.index, g.signature.group_hash.hex(), g.signature.prev.hex())
        for g in groups
        if g.signature
    ]
    assert got == [(f["index"], f["group_hash"], f["prev"]) for f in facts["groups"]]
