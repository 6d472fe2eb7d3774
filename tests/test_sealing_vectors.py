"""The published test vectors (tests/vectors, TEST keys) verify, decrypt to
the documented plaintexts, and stay byte-stable: another implementation of
docs/FORMAT.md checks itself against the same files."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sealing import canonical, fss
from sealing.age import Identity
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


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_bad_vector_fails_on_its_one_rule(name: str) -> None:
    escrow = fss.load_escrow(V / "escrow.TEST-ONLY.txt")
    report = verify_store(V / "bad" / name / "store", escrow_key=escrow)
    assert not report.ok
    assert CASES[name]["problem"] in report.problems[0].message, report.problems


def test_bad_vectors_exit_1_through_the_cli_without_a_traceback() -> None:
    for name in sorted(CASES):
        out = subprocess.run(
            [sys.executable, "-m", "firmware.cli", "verify", str(V / "bad" / name / "store")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 1, (name, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr + out.stdout, name


def test_the_signed_media_vector_checks_as_documented() -> None:
    from capture import gopsign
    from firmware.cmd_verify_media import read_access_units

    facts = json.loads((V / "media" / "signed.json").read_text())
    check = gopsign.check_stream(read_access_units(V / "media" / "signed.ts"))
    assert check.ok and check.serial == facts["serial"] and check.key
    assert check.key.hex() == facts["recording_key"]
    got = [
        (g.signature.index, g.signature.group_hash.hex(), g.signature.prev.hex())
        for g in check.groups
        if g.signature
    ]
    assert got == [(f["index"], f["group_hash"], f["prev"]) for f in facts["groups"]]
