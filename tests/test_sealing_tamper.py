"""Tamper campaign, in the spirit of journald's verify test: every byte of
every file flipped in turn, and records and segments deleted, duplicated,
reordered, inserted and truncated. The verifier must fail every single time.

The store under test ends with a `release` record for a dock receipt, so a
cut-off chain tail is detectable here too (a cut after the last outside
commitment is not: docs/FORMAT.md, "What cannot be detected").
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sealing import layout
from sealing.receipts import apply_receipt, make_receipt, media_entries
from sealing.verify import verify_store

from .conftest import Unit, make_unit, write_segment


@pytest.fixture(scope="module")
def small_unit(tmp_path_factory: pytest.TempPathFactory) -> Unit:
    unit = make_unit(tmp_path_factory.mktemp("tamper") / "unit")
    with unit.open() as store:
        write_segment(store, os.urandom(700))
        store.append("pause", {"reason": "to_be_stated"})
        write_segment(store, os.urandom(300), ext="jpg")
        store.append("resume", {})
        write_segment(store, os.urandom(900))
        write_segment(store, os.urandom(500))
        recs = store.records()
        receipt = make_receipt(
            unit.agency.dock,
            serial=store.serial,
            from_seq=0,
            to_seq=recs[-1].seq,
            head=recs[-1].hash,
            segments=media_entries(recs)[:2],
            dock_time_us=time.time_ns() // 1000,
        )
        apply_receipt(store, receipt.to_bytes())
    assert verify_store(unit.path, escrow_key=unit.agency.escrow).ok
    return unit


def _store_files(root: Path) -> list[Path]:
    # the reserve is zeros kept for a full disk, not evidence (docs/FORMAT.md 6)
    skip = {layout.LOCK, layout.RESERVE}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name not in skip)


class Campaign:
    def __init__(self, unit: Unit, work: Path) -> None:
        self.pristine = unit.path / "store"
        self.root = work / "store"
        shutil.copytree(self.pristine, self.root)
        self.escrow = unit.agency.escrow
        self.tried = 0
        self.missed: list[str] = []

    def check(self, what: str) -> None:
        self.tried += 1
        if verify_store(self.root, escrow_key=self.escrow).ok:
            self.missed.append(what)

    def restore(self) -> None:
        shutil.rmtree(self.root)
        shutil.copytree(self.pristine, self.root)

    def mutate(self, what: str, change: Callable[[], None]) -> None:
        change()
        self.check(what)
        self.restore()


@pytest.mark.parametrize("stride", [4, pytest.param(1, marks=pytest.mark.soak, id="every-byte")])
def test_every_byte_flipped_is_detected(small_unit: Unit, tmp_path: Path, stride: int) -> None:
    """Every `stride`-th byte of every file (every byte under -m soak)."""
    c = Campaign(small_unit, tmp_path)
    for path in _store_files(c.root):
        original = path.read_bytes()
        for i in range(0, len(original), stride):
            data = bytearray(original)
            data[i] ^= 0xFF
            path.write_bytes(bytes(data))
            c.check(f"{path.name}@{i}")
        path.write_bytes(original)
    print(f"\ntamper: {c.tried} byte flips tried, {len(c.missed)} undetected")
    assert c.tried > 5000 // stride
    assert not c.missed, c.missed[:10]


@pytest.mark.parametrize("stride", [7, pytest.param(1, marks=pytest.mark.soak, id="every-byte")])
def test_every_bit_of_the_chain_flipped_is_detected(
    small_unit: Unit, tmp_path: Path, stride: int
) -> None:
    """Every bit of every `stride`-th byte (every byte under -m soak)."""
    c = Campaign(small_unit, tmp_path)
    path = c.root / layout.CHAIN
    original = path.read_bytes()
    for i in range(0, len(original), stride):
        for bit in range(8):
            data = bytearray(original)
            data[i] ^= 1 << bit
            path.write_bytes(bytes(data))
            c.check(f"chain bit {i}.{bit}")
    path.write_bytes(original)
    print(f"\ntamper: {c.tried} chain bit flips tried, {len(c.missed)} undetected")
    assert not c.missed, c.missed[:10]


def test_record_and_segment_surgery_is_detected(small_unit: Unit, tmp_path: Path) -> None:
    c = Campaign(small_unit, tmp_path)
    chain = c.root / layout.CHAIN
    lines = chain.read_bytes().splitlines(keepends=True)
    n = len(lines)
    foreign = make_unit(tmp_path / "foreign")
    with foreign.open() as store:
        write_segment(store, os.urandom(600))
    foreign_lines = (foreign.path / "store" / layout.CHAIN).read_bytes().splitlines(True)

    def put(new: list[bytes]) -> Callable[[], None]:
        return lambda: chain.write_bytes(b"".join(new))

    for i in range(n):
        c.mutate(f"delete record {i}", put(lines[:i] + lines[i + 1 :]))
        c.mutate(f"duplicate record {i}", put(lines[: i + 1] + [lines[i]] + lines[i + 1 :]))
        c.mutate(
            f"insert foreign record before {i}",
            put(lines[:i] + [foreign_lines[min(i, len(foreign_lines) - 1)]] + lines[i:]),
        )
        c.mutate(f"truncate chain to {i} records", put(lines[:i]))
        c.mutate(f"truncate mid-record {i}", put(lines[:i] + [lines[i][: len(lines[i]) // 2]]))
        if i + 1 < n:
            c.mutate(
                f"swap records {i},{i + 1}",
                put(lines[:i] + [lines[i + 1], lines[i]] + lines[i + 2 :]),
            )
    segs = sorted((c.root / "segments").iterdir())
    assert len(segs) >= 2
    for s in segs:
        name = s.name
        c.mutate(f"delete {name}", lambda s=s: s.unlink())
        c.mutate(f"truncate {name}", lambda s=s: s.write_bytes(s.read_bytes()[:-1]))
        c.mutate(f"extend {name}", lambda s=s: s.write_bytes(s.read_bytes() + b"\0"))
        c.mutate(
            f"copy {name} as another segment",
            lambda s=s: shutil.copy(s, s.with_name(s.name.replace("_0000", "_0009"))),
        )
    c.mutate(
        "swap two segments' contents", lambda: (segs[0].write_bytes(segs[1].read_bytes()), None)
    )
    fseg = next((foreign.path / "store" / "segments").iterdir())
    c.mutate("insert a foreign segment", lambda: shutil.copy(fseg, c.root / "segments"))
    c.mutate(
        "rename a segment to the next number",
        lambda: segs[-1].rename(segs[-1].with_name(segs[-1].name.replace("_000004", "_000005"))),
    )
    receipts = list((c.root / "receipts").iterdir())
    c.mutate("delete the receipt", lambda: receipts[0].unlink())
    c.mutate(
        "replace device key",
        lambda: shutil.copy(foreign.path / "store" / layout.DEVICE_PUB, c.root / layout.DEVICE_PUB),
    )
    print(f"\ntamper: {c.tried} record/segment mutations tried, {len(c.missed)} undetected")
    assert not c.missed, c.missed


def test_verify_refuses_a_fifo_or_a_link_instead_of_hanging(tmp_path: Path) -> None:
    """A FIFO named like a segment or a receipt would block a reader for ever:
    the verifier names it and reads nothing; a receipt write a power cut
    interrupted (`.json.tmp`) is noted, not a failure."""
    import os

    from .conftest import make_unit, write_segment

    unit = make_unit(tmp_path / "unit")
    store = unit.open(boot_body={"cause": "test"})
    write_segment(store, b"x" * 10_000)
    name = store.records()[-1].body["file"]
    store.close()
    seg = unit.path / "store" / "segments" / name
    seg.unlink()
    os.mkfifo(seg)
    receipts = unit.path / "store" / "receipts"
    receipts.mkdir(exist_ok=True)
    os.symlink("/dev/zero", receipts / "abc.json")
    (receipts / "def.json.tmp").write_bytes(b"{")
    report = verify_store(unit.path)  # returns: a hang would time the test out
    problems = {(p.where, p.message) for p in report.problems}
    assert (f"segments/{name}", "a FIFO, not a regular file: not read") in problems
    assert ("receipts/abc.json", "a symbolic link, not a regular file: not read") in problems
    assert not [p for p in report.problems if "def.json.tmp" in p.where]
    assert any("def.json.tmp" in n for n in report.notes)
    (receipts / "abc.json").unlink()
    unit.open(boot_body={"cause": "recovery"}).close()  # recovery removes the leftover
    assert not (receipts / "def.json.tmp").exists()


def test_a_seized_unit_cannot_release_evidence_under_its_own_receipt(tmp_path: Path) -> None:
    """With everything a seized unit gives up (its store, signing and MAC keys),
    an attacker deletes a segment, signs a receipt with a fresh key, keeps it
    and appends `release`: every signature and MAC holds, and the verifier still
    refuses, because that key is no dock the unit was provisioned with. A second
    genesis record (enrolling another dock) is refused too."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sealing.files import write_durably

    from .conftest import make_unit, write_segment

    unit = make_unit(tmp_path / "unit")
    store = unit.open(boot_body={"cause": "test"})
    write_segment(store, os.urandom(5_000))
    recs = store.records()
    rogue = make_receipt(
        Ed25519PrivateKey.generate(),
        serial=store.serial,
        from_seq=0,
        to_seq=recs[-1].seq,
        head=recs[-1].hash,
        segments=media_entries(recs),
        dock_time_us=time.time_ns() // 1000,
    )
    victim = media_entries(recs)[0]["file"]
    (unit.path / "store" / "segments" / victim).unlink()
    write_durably(unit.path / "store" / "receipts" / f"{rogue.id}.json", rogue.to_bytes())
    store.append(
        "release",
        {
            "receipt": rogue.id,
            "dock": rogue.dock,
            "from_seq": 0,
            "to_seq": recs[-1].seq,
            "head": recs[-1].hash,
            "files": [victim],
            "bytes_freed": 5_000,
        },
    )
    store.append("genesis", {"docks": [rogue.dock]})
    store.close()
    report = verify_store(unit.path, escrow_key=unit.agency.escrow)
    messages = [p.message for p in report.problems]
    assert not report.ok
    assert any("which genesis does not enroll" in m for m in messages), messages
    assert any("missing and not released" in m for m in messages), messages
    assert any("a second genesis record" in m for m in messages), messages


def test_json_nested_thousands_deep_is_refused_not_a_traceback() -> None:
    from sealing import canonical

    deep = b"[" * 60_000 + b"]" * 60_000  # within the count of arrays, beyond any stack
    with pytest.raises(canonical.EncodingError, match="nested too deeply"):
        canonical.decode(deep)
    deeper = b"[" * 100_000 + b"]" * 100_000  # beyond the count: refused before parsing
    with pytest.raises(canonical.EncodingError, match="more than 65536 objects and arrays"):
        canonical.decode(deeper)
    from sealing.receipts import ReceiptRefused, parse_receipt

    with pytest.raises(ReceiptRefused):  # a receipt made of it: refused with a reason
        parse_receipt(b'{"receipt":' + deep + b',"sig":""}')
