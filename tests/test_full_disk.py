"""A full disk, on a real small file system (a tmpfs mounted for the test,
so it needs root): an append that cannot be written leaves the chain and the
MAC key as they were and refuses further appends; once space is freed the
store reopens, recovers and verifies with no record lost or repeated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealing.store import StoreError
from sealing.unit import open_unit
from sealing.verify import verify_store

from .conftest import make_unit


def _fill(path: Path) -> Path:
    """Take every free byte of the file system `path` is on."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * size) < size:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("batched", [False, True], ids=["one record", "a batch"])
def test_a_full_disk_loses_no_record_and_the_store_opens_again(
    small_fs: Path, batched: bool
) -> None:
    unit = make_unit(small_fs / "unit")
    store = open_unit(unit.path, boot_body={"cause": "test"})
    store.append("mark", {"n": 1})
    chain = unit.path / "store" / "chain.jsonl"
    before = chain.read_bytes()
    keyfile = next((unit.path / "keys").glob("fss*"))
    key_before = keyfile.read_bytes()
    filler = _fill(small_fs)
    big = {"pad": "x" * 20_000}  # larger than any slack the file system has left
    if batched:  # the batch is taken back whole: the record that fitted too
        with pytest.raises(StoreError, match=r"records \d+-\d+ not written"), store.batch():
            store.append("mark", {"n": 2})
            store.append("mark", big)
    else:
        with pytest.raises(StoreError, match="not written"):
            store.append("mark", big)
    assert chain.read_bytes() == before  # no half line, no repeated seq
    assert keyfile.read_bytes() == key_before
    with pytest.raises(StoreError, match="reopened"):
        store.append("mark", {"n": 3})  # refused until reopened, even if it would fit
    store.close()
    filler.unlink()
    again = open_unit(unit.path, boot_body={"cause": "after full disk"})
    again.append("mark", {"n": 4})
    again.close()
    report = verify_store(unit.path)
    assert report.ok, report.problems
    seqs = [r["seq"] for r in report.records]
    assert seqs == list(range(len(seqs)))
    assert [r["body"].get("n") for r in report.records if r["type"] == "mark"] == [1, 4]


def test_a_unit_whose_disk_filled_still_opens_exports_and_frees(small_fs: Path) -> None:
    """The reserve: a store created on this file system keeps 1 MiB of real
    blocks; when the disk is full at open, they are freed so that boot,
    recovery and the records of an export can still be written."""
    from sealing import layout
    from sealing.store import RESERVE_BYTES

    unit = make_unit(small_fs / "unit")
    reserve = unit.path / "store" / layout.RESERVE
    assert reserve.stat().st_size == RESERVE_BYTES and reserve.stat().st_blocks > 0
    store = open_unit(unit.path, boot_body={"cause": "test"})
    store.close()
    _fill(small_fs)  # what a long recording left behind
    again = open_unit(unit.path, boot_body={"cause": "after full disk"})  # must not fail
    for n in range(20):  # an officer's login, a dock's pull and release: more than slack
        again.append("auth", {"dock": "d", "result": "ok", "n": n, "pad": "x" * 400})
    assert not reserve.exists()
    assert not again.restore_reserve()  # no room for it yet
    again.close()
    (small_fs / "filler").unlink()  # the dock freed space
    third = open_unit(unit.path, boot_body={"cause": "space back"})
    assert third.restore_reserve() and reserve.stat().st_size == RESERVE_BYTES
    third.close()
    report = verify_store(unit.path)
    assert report.ok, report.problems
    full = [r for r in report.records if r["type"] == "fault"]
    assert full and full[0]["body"]["what"] == "storage_full"
    assert full[0]["body"]["reserve_released"] == RESERVE_BYTES
