"""Receipts: the one thing that may free storage. Each refusal leaves every
file in place; a good receipt frees exactly what it names, once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealing import canonical
from sealing.receipts import ReceiptRefused, apply_receipt, make_receipt, media_entries
from sealing.store import Store
from sealing.verify import verify_store

from .conftest import Unit, make_unit, write_segment


def _files(unit: Unit) -> set[str]:
    return {p.name for p in (unit.path / "store" / "segments").iterdir()}


def _receipt(store: Store, dock: Ed25519PrivateKey, **over: object) -> bytes:
    recs = store.records()
    fields: dict[str, object] = dict(
        serial=store.serial,
        from_seq=0,
        to_seq=recs[-1].seq,
        head=recs[-1].hash,
        segments=media_entries(recs),
        dock_time_us=time.time_ns() // 1000,
    )
    fields.update(over)
    return make_receipt(dock, **fields).to_bytes()  # type: ignore[arg-type]


def test_good_receipt_frees_exactly_its_segments_once(recorded_unit: Unit) -> None:
    dock = recorded_unit.agency.dock
    with recorded_unit.open() as store:
        entries = media_entries(store.records())
        data = _receipt(store, dock, segments=entries[:2])
        done = apply_receipt(store, data)
        assert sorted(done.files) == sorted(e["file"] for e in entries[:2])
        assert done.bytes_freed > 0 and not done.already_applied
        assert _files(recorded_unit) == {e["file"] for e in entries[2:]}
        again = apply_receipt(store, data)
        assert again.already_applied and _files(recorded_unit) == {e["file"] for e in entries[2:]}
        assert sum(r.type == "release" for r in store.records()) == 1
    report = verify_store(
        recorded_unit.path,
        identity=recorded_unit.agency.identity,
        escrow_key=recorded_unit.agency.escrow,
    )
    assert report.ok, report.problems
    assert [s["status"] for s in report.segments].count("released") == 2


def _refused(unit: Unit, make: object, match: str) -> None:
    before = _files(unit)
    with unit.open() as store:
        head = store.head.seq
        with pytest.raises(ReceiptRefused, match=match):
            apply_receipt(store, make(store))  # type: ignore[operator]
        assert not any(r.type == "release" for r in store.records()[head:])
    assert _files(unit) == before
    assert verify_store(unit.path).ok


def test_unknown_dock_key_is_refused(recorded_unit: Unit) -> None:
    _refused(recorded_unit, lambda s: _receipt(s, Ed25519PrivateKey.generate()), "not enrolled")


def test_bad_signature_is_refused(recorded_unit: Unit) -> None:
    def forge(s: Store) -> bytes:
        outer = canonical.decode(_receipt(s, recorded_unit.agency.dock))
        outer["receipt"]["dock_time_us"] += 1
        return canonical.encode(outer)

    _refused(recorded_unit, forge, "bad signature")


def test_other_device_is_refused(recorded_unit: Unit) -> None:
    _refused(
        recorded_unit,
        lambda s: _receipt(s, recorded_unit.agency.dock, serial="BC-OTHER"),
        "is for device",
    )


def test_mismatching_hash_is_refused(recorded_unit: Unit) -> None:
    def bad(s: Store) -> bytes:
        entries = media_entries(s.records())
        entries[1]["ct_sha256"] = "0" * 64
        return _receipt(s, recorded_unit.agency.dock, segments=entries)

    _refused(recorded_unit, bad, "hash does not match")


def test_range_not_in_chain_is_refused(recorded_unit: Unit) -> None:
    _refused(
        recorded_unit,
        lambda s: _receipt(s, recorded_unit.agency.dock, to_seq=10_000),
        "not in this chain",
    )


def test_wrong_head_is_refused(recorded_unit: Unit) -> None:
    _refused(
        recorded_unit, lambda s: _receipt(s, recorded_unit.agency.dock, head="a" * 64), "head hash"
    )


def test_segment_outside_range_is_refused(recorded_unit: Unit) -> None:
    def bad(s: Store) -> bytes:
        return _receipt(
            s, recorded_unit.agency.dock, from_seq=0, to_seq=3, head=s.records()[3].hash
        )

    _refused(recorded_unit, bad, "outside the receipt's range")


def test_garbage_is_refused(recorded_unit: Unit) -> None:
    _refused(recorded_unit, lambda s: b"\x00garbage{", "malformed receipt")


def test_replay_to_another_unit_is_refused(recorded_unit: Unit, tmp_path: Path) -> None:
    other = make_unit(tmp_path / "other", serial="BC-TEST-0002")
    with recorded_unit.open() as store:
        data = _receipt(store, recorded_unit.agency.dock)
    before = _files(other)
    with other.open() as store, pytest.raises(ReceiptRefused):
        apply_receipt(store, data)
    assert _files(other) == before


def test_segment_being_written_is_refused(unit: Unit) -> None:
    with unit.open() as store:
        write_segment(store, b"a" * 1000)
        w = store.open_segment()
        w.write(b"b" * 1000)
        entries = media_entries(store.records())
        entries.append({"seq": store.head.seq, "file": str(w.name), "ct_sha256": "0" * 64})
        data = _receipt(store, unit.agency.dock, segments=entries)
        with pytest.raises(ReceiptRefused, match="still being written"):
            apply_receipt(store, data)
        assert len(list((unit.path / "store" / "segments").iterdir())) == 2


def test_release_interrupted_after_keeping_receipt_completes_at_open(recorded_unit: Unit) -> None:
    """A crash between storing the receipt and deleting: finished at next open."""
    from sealing.receipts import _keep, parse_receipt

    with recorded_unit.open() as store:
        data = _receipt(store, recorded_unit.agency.dock)
        _keep(store, parse_receipt(data))
    with recorded_unit.open() as store:
        assert store.recovery.pending_receipts
        assert store.records()[-1].type == "release"
    assert _files(recorded_unit) == set()
    assert verify_store(recorded_unit.path).ok


def test_chain_cut_before_receipt_head_is_detected(recorded_unit: Unit) -> None:
    with recorded_unit.open() as store:
        data = _receipt(store, recorded_unit.agency.dock, segments=[])
        apply_receipt(store, data)
        store.append("mark", {"flag": "evidence"})
    chain = recorded_unit.path / "store" / "chain.jsonl"
    lines = chain.read_bytes().splitlines(keepends=True)
    chain.write_bytes(b"".join(lines[:-3]))  # drop the tail the dock had seen
    report = verify_store(recorded_unit.path)
    assert not report.ok
    assert any("chain cut short" in str(p) or "release cites" in str(p) for p in report.problems)
    # and with the receipt held by the dock (the unit's copy removed too)
    for p in (recorded_unit.path / "store" / "receipts").iterdir():
        p.unlink()
    report = verify_store(recorded_unit.path, extra_receipts=[data])
    assert any("chain cut short" in str(p) for p in report.problems)
