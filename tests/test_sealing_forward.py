"""Forward integrity: with the unit's keys taken at seizure, rewriting what it
recorded before is detected by a verifier holding the escrowed key."""

from __future__ import annotations

import shutil

from sealing import canonical, fss, layout
from sealing.keys import UnitKeys
from sealing.records import Record, parse_line, seal_line
from sealing.verify import verify_store

from .conftest import Unit


def _rewrite(unit: Unit, seq: int, change: dict, mac_key: bytes) -> None:
    """What an attacker with the seized signing key and current MAC key does:
    change record `seq`, re-sign it and every later record, re-link the chain."""
    keys = UnitKeys.load(unit.path / "keys")
    path = unit.path / "store" / layout.CHAIN
    lines = path.read_bytes().splitlines()
    out, prev_hash = [], None
    for raw in lines:
        rec, _, mac = parse_line(raw)
        if rec.seq >= seq:
            body = dict(rec.body, **change) if rec.seq == seq else rec.body
            rec = Record(
                rec.seq,
                rec.type,
                body,
                rec.stamp,
                rec.serial,
                rec.officer,
                prev_hash or rec.prev,
                rec.boot,
            )
            out.append(seal_line(rec, keys.signing, mac_key).rstrip(b"\n"))
        else:
            out.append(raw)
        prev_hash = rec.hash
    path.write_bytes(b"\n".join(out) + b"\n")


def test_rewrite_with_seized_keys_is_caught_only_by_escrow(recorded_unit: Unit) -> None:
    current = fss.load(recorded_unit.path / "keys" / "fss.key").key
    _rewrite(recorded_unit, 3, {"reason": "nothing happened"}, current)
    signature_only = verify_store(recorded_unit.path)
    assert signature_only.ok  # signatures and links alone cannot see it: that is the point
    report = verify_store(recorded_unit.path, escrow_key=recorded_unit.agency.escrow)
    assert not report.ok
    assert report.problems[0].record == 3 and "forward-secure MAC" in report.problems[0].message


def test_skipped_epoch_cannot_be_used(recorded_unit: Unit) -> None:
    """Claiming a later key index does not help: the verifier derives k[seq] itself."""
    state = fss.load(recorded_unit.path / "keys" / "fss.key")
    head = state.seq - 1
    # the attacker rewrites the last record with the key one step ahead
    _rewrite(recorded_unit, head, {"note": "x"}, fss.evolve(state.key))
    report = verify_store(recorded_unit.path, escrow_key=recorded_unit.agency.escrow)
    assert not report.ok and report.problems[0].record == head


def test_key_file_only_holds_the_next_key(recorded_unit: Unit) -> None:
    state = fss.load(recorded_unit.path / "keys" / "fss.key")
    n = len((recorded_unit.path / "store" / layout.CHAIN).read_bytes().splitlines())
    assert state.seq == n
    k = recorded_unit.agency.escrow
    for _ in range(n):
        k = fss.evolve(k)
    assert state.key == k
    assert not list((recorded_unit.path / "keys").glob("*.tmp"))


def test_other_device_signature_is_detected(recorded_unit: Unit, tmp_path) -> None:
    from .conftest import make_unit

    other = make_unit(tmp_path / "other")
    foreign = UnitKeys.load(other.path / "keys")
    path = recorded_unit.path / "store" / layout.CHAIN
    lines = path.read_bytes().splitlines()
    rec, _, _ = parse_line(lines[4])
    lines[4] = seal_line(rec, foreign.signing, b"\0" * 32).rstrip(b"\n")
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = verify_store(recorded_unit.path)
    assert report.problems[0].record == 4 and "signature" in report.problems[0].message
    # and a whole store re-signed by another key fails against the enrolled key
    shutil.copy(
        other.path / "store" / layout.DEVICE_PUB, recorded_unit.path / "store" / layout.DEVICE_PUB
    )
    assert not verify_store(recorded_unit.path).ok
    assert canonical.decode(lines[0])["rec"]["type"] == "genesis"
