"""The sealed store through its API and its files: writing, reading back,
locking, bad input, and what the verifier says about a clean store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from sealing import canonical, layout
from sealing.age import Identity
from sealing.records import Record, RecordError, parse_line
from sealing.store import StoreError, StoreLocked
from sealing.verify import Report, verify_store

from .conftest import Unit, write_segment


def _verified(unit: Unit) -> Report:
    """The unit's store verified whole, with the agency's identity and escrow."""
    a = unit.agency
    report = verify_store(unit.path, identity=a.identity, escrow_key=a.escrow)
    assert report.ok, report.problems
    return report


def test_clean_store_verifies_with_every_anchor(recorded_unit: Unit) -> None:
    a = recorded_unit.agency
    report = verify_store(recorded_unit.path, identity=a.identity, escrow_key=a.escrow)
    assert report.ok, report.problems
    kinds = [s["kind"] for s in report.segments]
    assert kinds == ["segment", "segment", "still", "segment"]
    assert all(s["plaintext"] == "decrypted, hash matches" for s in report.segments)
    assert report.anchors["forward_secure_mac"] == "checked with the escrow key"
    types = [r["type"] for r in report.records]
    assert types[:2] == ["genesis", "boot"] and "pause" in types and "mark" in types


def test_records_carry_the_required_fields(recorded_unit: Unit) -> None:
    lines = (recorded_unit.path / "store" / layout.CHAIN).read_bytes().splitlines()
    rec, _, _ = parse_line(lines[2])
    d = rec.to_dict()
    for k in ("v", "serial", "officer", "seq", "prev", "type", "mono_us", "wall_us", "clock"):
        assert k in d
    assert d["serial"] == "BC-TEST-0001" and d["officer"] == "OFFICER-7"
    seg = next(parse_line(x)[0] for x in lines if b'"type":"segment"' in x)
    for k in (
        "ct_sha256",
        "pt_sha256",
        "ct_len",
        "pt_len",
        "start",
        "end",
        "duration_us",
        "container",
        "codecs",
        "location",
        "retention",
        "file",
        "segno",
    ):
        assert k in seg.body
    assert seg.body["pt_len"] == 150_000


def test_segment_names_carry_serial_date_and_number(recorded_unit: Unit) -> None:
    names = sorted(p.name for p in (recorded_unit.path / "store" / "segments").iterdir())
    parsed = [layout.parse_name(n) for n in names]
    assert [p.segno for p in parsed] == [1, 2, 3, 4]
    assert all(p.serial == "BC-TEST-0001" for p in parsed)
    assert parsed[2].kind == "still" and names[2].endswith(".jpg.age")
    assert len(parsed[0].day_dir.split("/")) == 3


def test_no_plaintext_reaches_the_disk(unit: Unit) -> None:
    marker = b"PLAINTEXT-MARKER-" * 1000
    with unit.open() as store:
        w = store.open_segment()
        w.write(marker)
        w.sync()
        on_disk = w.path.read_bytes()
        assert b"PLAINTEXT-MARKER" not in on_disk and len(on_disk) > 0
        write_segment(store, marker)
    for p in (unit.path / "store").rglob("*"):
        if p.is_file():
            assert b"PLAINTEXT-MARKER" not in p.read_bytes(), p


def test_second_writer_is_locked_out(unit: Unit) -> None:
    with unit.open(), pytest.raises(StoreLocked, match="another writer"):
        unit.open()


def test_second_writer_in_another_process_is_locked_out(unit: Unit) -> None:
    code = (
        "import sys\nfrom sealing.unit import open_unit\n"
        "from sealing.store import StoreLocked\n"
        "try:\n open_unit(sys.argv[1])\nexcept StoreLocked: sys.exit(7)\n"
    )
    with unit.open():
        rc = subprocess.run([sys.executable, "-c", code, str(unit.path)]).returncode
    assert rc == 7


def test_floats_are_refused_and_nothing_is_appended(unit: Unit) -> None:
    with unit.open() as store:
        before = store.head.seq
        with pytest.raises(canonical.EncodingError, match="floats"):
            store.append("mark", {"x": 1.5})
        assert store.head.seq == before
    assert verify_store(unit.path).ok


def test_non_canonical_line_is_rejected() -> None:
    good = canonical.encode({"a": 1, "b": [1, 2]})
    assert canonical.decode(good) == {"a": 1, "b": [1, 2]}
    with pytest.raises(canonical.EncodingError):
        canonical.decode(b'{"b":[1,2],"a":1}')
    with pytest.raises(canonical.EncodingError):
        canonical.decode(b'{"a": 1}')
    with pytest.raises(RecordError):
        parse_line(b'{"mac":"x","rec":{},"sig":""}')


def test_segment_close_twice_is_an_error(unit: Unit) -> None:
    from sealing.store import SegmentMeta

    with unit.open() as store:
        w = store.open_segment()
        w.write(b"x")
        meta = SegmentMeta(start=store.clock(), end=store.clock())
        w.close(meta)
        with pytest.raises(StoreError, match="already closed"):
            w.close(meta)


def test_wrong_identity_cannot_decrypt(recorded_unit: Unit) -> None:
    report = verify_store(recorded_unit.path, identity=Identity.generate())
    assert not report.ok
    assert "cannot open" in str(report.problems[0])


def test_escrow_key_of_another_unit_is_reported(recorded_unit: Unit) -> None:
    report = verify_store(recorded_unit.path, escrow_key=os.urandom(32))
    assert not report.ok and "escrow key does not belong" in str(report.problems[0])


def test_unknown_record_type_is_checked_but_not_fatal(unit: Unit) -> None:
    with unit.open() as store:
        store.append("future_thing", {"anything": [1, 2]})
    report = verify_store(unit.path, escrow_key=unit.agency.escrow)
    assert report.ok
    assert any("future_thing" in n for n in report.notes)


def test_cli_verify_exit_codes(recorded_unit: Unit, tmp_path) -> None:
    ident = tmp_path / "id.txt"
    ident.write_text(str(recorded_unit.agency.identity) + "\n")
    run = [sys.executable, "-m", "firmware.cli", "verify"]
    ok = subprocess.run(
        run + [str(recorded_unit.path), "--identity", str(ident), "--json"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    data = json.loads(ok.stdout)
    assert data["ok"] and all("type" in r for r in data["records"])
    not_store = subprocess.run(run + [str(tmp_path)], capture_output=True, text=True)
    assert not_store.returncode == 2 and "not a sealed store" in not_store.stderr
    bad_id = tmp_path / "bad.txt"
    bad_id.write_text("hello\n")
    garbage = subprocess.run(
        run + [str(recorded_unit.path), "--identity", str(bad_id)], capture_output=True, text=True
    )
    assert garbage.returncode == 2 and "identity" in garbage.stderr
    seg = next((recorded_unit.path / "store" / "segments").iterdir())
    data = bytearray(seg.read_bytes())
    data[-1] ^= 1
    seg.write_bytes(bytes(data))
    bad = subprocess.run(run + [str(recorded_unit.path)], capture_output=True, text=True)
    assert bad.returncode == 1 and f"FAILED at segments/{seg.name}" in bad.stdout


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count every fsync the store and its key file make (they still happen)."""
    calls: list[int] = []
    real = os.fsync

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counted)
    return calls


def test_a_batch_writes_its_records_with_one_fsync_and_one_key_update(
    unit: Unit, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = unit.path / "store" / layout.CHAIN
    with unit.open() as store:
        calls = _count_fsyncs(monkeypatch)
        store.append("mark", {"n": 0})
        alone = len(calls)  # chain fsync, key file fsync, key directory fsync
        calls.clear()
        before = chain.read_bytes()
        with store.batch():
            for n in (1, 2, 3):
                store.append("mark", {"n": n})
            assert chain.read_bytes() == before  # nothing reaches the file before the end
            with store.batch():  # a nested batch joins the outer one
                store.append("mark", {"n": 4})
            assert chain.read_bytes() == before
        assert len(calls) == alone, "a batch of four costs what one record does"
        assert [parse_line(x)[0].body["n"] for x in chain.read_bytes().splitlines()[-4:]] == [
            1, 2, 3, 4,
        ]  # fmt: skip
        calls.clear()
        store.append("mark", {"n": 5})  # after the batch, each append is durable at once
        assert len(calls) == alone
        assert parse_line(chain.read_bytes().splitlines()[-1])[0].body["n"] == 5
    _verified(unit)  # the MAC key advanced once per record, in order


def test_a_read_inside_a_batch_sees_its_records_and_another_writer_waits(unit: Unit) -> None:

    with unit.open() as store:
        other_done = threading.Event()
        with store.batch():
            first = store.append("mark", {"n": 1})
            t = threading.Thread(
                target=lambda: (store.append("mark", {"n": 2}), other_done.set()), daemon=True
            )
            t.start()
            assert not other_done.wait(0.3)  # the batch holds the store
            assert store.records()[-1].seq == first.seq  # a read writes what is pending
            store.append("mark", {"n": 3})
        t.join(5)
        assert other_done.is_set()
        assert [r.body.get("n") for r in store.records()[-3:]] == [1, 3, 2]
    assert verify_store(unit.path, escrow_key=unit.agency.escrow).ok


def _gated_seal(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Hold every seal's directory fsync until `gate` is set; `held` says one waits."""
    import sealing.store as store_module

    gate, held = threading.Event(), threading.Event()
    real = store_module.fsync_dir

    def slow(path: os.PathLike[str]) -> None:
        if threading.current_thread().name == "store-committer":
            held.set()
            assert gate.wait(10)
        real(path)

    monkeypatch.setattr(store_module, "fsync_dir", slow)
    return gate, held


def test_a_handed_off_batch_returns_before_its_seal_and_reads_wait_for_it(
    unit: Unit, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sealing.store import SegmentMeta

    chain = unit.path / "store" / layout.CHAIN
    with unit.open() as store:
        gate, held = _gated_seal(monkeypatch)
        w = store.open_segment()
        w.write(b"picture")
        with store.batch(wait=False):
            seg = w.close(SegmentMeta(start=store.clock(), end=store.clock()))
            paused = store.append("pause", {"reason": "test"})
        assert held.wait(5)  # the committer is in the seal; this thread went on
        assert seg.body["file"].encode() not in chain.read_bytes()  # nor is its record
        assert b'"type":"pause"' not in chain.read_bytes()
        got: list[int] = []
        reader = threading.Thread(target=lambda: got.append(store.records()[-1].seq))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and not got  # a read waits for what is not durable
        gate.set()
        reader.join(5)
        assert got == [paused.seq]
        assert (store.segments / seg.body["file"]).exists()
        after = store.append("mark", {"n": 1})  # in order after the batch
        assert after.seq == paused.seq + 1
    _verified(unit)


def test_a_file_closed_outside_a_batch_waits_for_its_sync_with_the_committer(
    unit: Unit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync in a handed-off batch is the committer's; a close outside any
    batch (a shutdown's) must not close the file under it: it waits for the
    committer first. The committer's sync is held until the close is
    waiting for the committer: a close that sealed first has closed the
    file by then, the sync fails and the store stops."""
    import threading

    from sealing.store import SegmentMeta

    gate, waiting = threading.Event(), threading.Event()
    real = os.fdatasync

    def held(fd: int) -> None:
        if threading.current_thread().name == "store-committer":
            gate.wait(60)  # bounds a hang only: the test opens it
        real(fd)

    monkeypatch.setattr(os, "fdatasync", held)
    with unit.open() as store:
        real_settle = store._settle

        def noted_settle() -> None:
            if threading.current_thread().name == "closer":
                waiting.set()
            real_settle()

        monkeypatch.setattr(store, "_settle", noted_settle)
        w = store.open_segment()
        with store.batch(wait=False):
            w.write(b"picture")
            w.sync()
        meta = SegmentMeta(start=store.clock(), end=store.clock())
        closed: list[Record] = []
        closer = threading.Thread(target=lambda: closed.append(w.close(meta)), name="closer")
        closer.start()
        assert waiting.wait(60)  # the close waits on the committer (before or after its seal)
        gate.set()
        closer.join(60)  # bounds a hang only: the committer is let through
        assert closed and closed[0].type == "segment"
        store.append("mark", {"n": 1})  # the store did not fail
    _verified(unit)


def test_a_sync_that_fails_on_the_committer_is_said_at_the_next_sync(
    unit: Unit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop syncs the open file five times a second and hands the
    fdatasync to the committer; a card that fails it stops the store, and
    the loop hears of it at its next sync, not a file's length later."""

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with unit.open() as store:
        w = store.open_segment()
        monkeypatch.setattr(os, "fdatasync", broken)
        with store.batch(wait=False):
            w.write(b"picture")
            store.sync_open_segments()
        store.wait_durable()
        with (
            pytest.raises(StoreError, match="not sealed or synced: .*Input/output error"),
            store.batch(wait=False),  # as the loop's turn
        ):
            w.write(b"more")
            store.sync_open_segments()
        monkeypatch.undo()


def test_a_seal_that_fails_on_the_committer_stops_the_store_and_recovery_keeps_the_file(
    unit: Unit, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sealing.store as store_module
    from sealing.store import SegmentMeta

    def broken(path: os.PathLike[str]) -> None:
        raise OSError(5, "Input/output error")

    chain = unit.path / "store" / layout.CHAIN
    with unit.open() as store:
        before = chain.read_bytes()
        w = store.open_segment()
        w.write(b"picture")
        monkeypatch.setattr(store_module, "fsync_dir", broken)
        with store.batch(wait=False):
            w.close(SegmentMeta(start=store.clock(), end=store.clock()))
            store.append("pause", {"reason": "test"})
        store.wait_durable()
        assert chain.read_bytes() == before  # neither record: their file was not sealed
        with pytest.raises(StoreError, match="not sealed or synced: .*Input/output error"):
            store.append("mark", {"n": 1})
        monkeypatch.undo()
    with unit.open(boot_body={"cause": "after a failed seal"}):
        pass
    report = _verified(unit)
    cut = [r for r in report.records if r["type"] == "power_loss" and "file" in r["body"]]
    assert len(cut) == 1 and cut[0]["body"]["cause"] == "partial_segment"
