"""The published test vectors (tests/vectors, TEST keys) verify, decrypt to
the documented plaintexts, and stay byte-stable: another implementation of
docs/FORMAT.md checks itself against the same files."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from sealing import canonical, fss
from sealing.age import Identity
from sealing.verify import verify_store

V = Path(__file__).parent / "vectors"


def test_vectors_verify_with_every_anchor() -> None:
    ident = Identity.parse((V / "agency-identity.TEST-ONLY.txt").read_text())
    escrow = fss.load_escrow(V / "escrow.TEST-ONLY.txt")
    report = verify_store(V / "unit", identity=ident, escrow_key=escrow)
    assert report.ok, report.problems
    assert [s["status"] for s in report.segments] == ["released", "intact", "intact"]
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
