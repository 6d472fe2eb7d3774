"""The dock index on SQLite and on a real PostgreSQL (tests/pg.py), and `dock.py
sync`: a dock's verified copies and index rows pushed to the agency's store,
once, resumably, refusing what no longer matches (R21)."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dock import index as dock_index
from dock import pull as dock_pull
from dock import sync as dock_sync
from dock.cli import main as dock_main
from dock.client import DockError
from dock.report import report
from sealing.cli_verify import dock_lookup
from sealing.verify import verify_store

from .english import EN_ARGS, english
from .export_fixtures import Link, start_link
from .pg import pg_server_fixture, pg_url_fixture  # noqa: F401  (fixtures: pg_server, pg_url)

SERIAL = "BC-TEST-0001"


def _start(base: Path) -> Link:
    """A unit with three segments and the events a report names, served on loopback."""
    lk = start_link(base)
    lk.store.append("pause", {"reason": "privacy"})
    lk.store.append("resume", {"after_pause_us": 1})
    lk.store.append("resume_note", {"given": False, "speech_s": 0})
    lk.store.append("fault", {"what": "microphone", "reason": "no frames"})
    return lk


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    lk = _start(tmp_path / "a")
    yield lk
    lk.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def agency_index(request: pytest.FixtureRequest) -> str | None:
    """The agency's index: its folder's dock.sqlite (None: the default), or PostgreSQL."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


def _reports(dock_dir: Path, index: str | Path | None = None) -> tuple[str, str]:
    return (
        report(dock_dir, english(), index=index),
        report(dock_dir, english(), late_after_s=0, index=index),
    )


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _verifies(agency: Path, link: Link) -> None:
    report = verify_store(
        agency / "units" / SERIAL,
        identity=link.unit.agency.identity,
        find_segment=dock_lookup(agency),
    )
    assert report.ok, report.problems
    assert {s["plaintext"] for s in report.segments} == {"decrypted, hash matches"}


def _rows_by_dock(target: str | Path) -> dict[str, int]:
    idx = dock_index.Index.open(target, dock=None)
    try:
        with idx.engine.connect() as conn:
            seg = dock_index.segments
            q = select(seg.c.dock, func.count()).group_by(seg.c.dock)
            return {d: n for d, n in conn.execute(q)}
    finally:
        idx.close()


def test_the_report_is_the_same_on_sqlite_and_postgresql(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Two units, the same day's work; one dock keeps its index in SQLite, the
    other on PostgreSQL (every index call of a real pull goes there)."""
    a, b = _start(tmp_path / "a"), _start(tmp_path / "b")
    try:
        a.pull(tmp_path / "dock-a")

        class PgIndex(dock_index.Index):
            def __init__(self, target: str | Path, dock: str | None = "local") -> None:
                super().__init__(pg_url, "dock-b" if dock else None)

        with monkeypatch.context() as m:
            m.setattr(dock_pull, "Index", PgIndex)
            result = b.pull(tmp_path / "dock-b")
        assert len(result.pulled) == 3 and result.receipt
    finally:
        a.close()
        b.close()
    assert not (tmp_path / "dock-b" / "dock.sqlite").exists()
    on_sqlite = _reports(tmp_path / "dock-a")
    on_pg = _reports(tmp_path / "dock-b", pg_url)
    assert on_sqlite == on_pg
    assert f"unit {SERIAL}" in on_pg[0] and "pauses: 1 (privacy)" in on_pg[0]
    assert "late export: 0 segments" in on_pg[0] and "late export: 3 segments" in on_pg[1]
    # the receipt marked every row it covers, on PostgreSQL too
    pg = dock_index.Index.open(pg_url, dock="dock-b")
    try:
        assert {r["receipt"] for r in pg.held(SERIAL).values()} == {result.receipt}
        assert pg.unit(SERIAL)["head_seq"] > 0
    finally:
        pg.close()
    assert (
        dock_main(["report", "--dock-dir", str(tmp_path / "dock-b"), "--index", pg_url, *EN_ARGS])
        == 0
    )
    assert capsys.readouterr().out.rstrip("\n") == on_sqlite[0]


def test_sync_pushes_verified_copies_once(
    link: Link, tmp_path: Path, agency_index: str | None
) -> None:
    dd, agency = tmp_path / "dock", tmp_path / "agency"
    link.pull(dd, identity=link.unit.agency.identity)
    before = _snapshot(dd)
    first = dock_sync.sync(dd, agency, agency_index, "dock1")
    assert first.ok, first.refused
    held = {p.name for p in dd.rglob("*.ts.age")}
    assert {Path(p).name for p in first.pushed if p.endswith(".age")} == held
    assert f"units/{SERIAL}/chain.jsonl" in first.pushed
    assert f"units/{SERIAL}/device_ed25519.pub" in first.pushed
    assert any(p.startswith(f"units/{SERIAL}/receipts/") for p in first.pushed)
    assert first.rows == 3 + 1 + 1  # segments, the receipt, the unit
    _verifies(agency, link)
    assert _reports(agency, agency_index) == _reports(dd)
    again = dock_sync.sync(dd, agency, agency_index, "dock1")
    assert again.ok and again.pushed == [] and again.rows == 0
    assert _snapshot(dd) == before  # nothing on the dock changed or went
    assert not list(agency.rglob("*.part")) and not list(agency.rglob("*.tmp"))


def test_sync_resumes_after_a_cut(
    link: Link, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dd, agency = tmp_path / "dock", tmp_path / "agency"
    link.pull(dd)
    real = dock_sync._copy_verified
    copies: list[Path] = []

    def cut_on_second(src: Path, dst: Path, want: str) -> None:
        copies.append(dst)
        if len(copies) == 2:  # the power goes half way through the second file
            dst.with_name(dst.name + ".part").write_bytes(src.read_bytes()[:1000])
            raise OSError(5, "Input/output error")
        real(src, dst, want)

    with monkeypatch.context() as m:
        m.setattr(dock_sync, "_copy_verified", cut_on_second)
        with pytest.raises(OSError):
            dock_sync.sync(dd, agency, None, "dock1")
    assert list(agency.rglob("*.part"))
    assert not (agency / "units" / SERIAL / "chain.jsonl").exists()  # the chain goes last
    rest = dock_sync.sync(dd, agency, None, "dock1")
    assert rest.ok, rest.refused
    segs = [p for p in rest.pushed if p.endswith(".age")]
    assert len(segs) == 2 and copies[0].name not in {Path(p).name for p in segs}
    assert not list(agency.rglob("*.part"))
    _verifies(agency, link)
    assert dock_sync.sync(dd, agency, None, "dock1").pushed == []


def test_two_docks_sync_into_one_agency_index(
    link: Link, tmp_path: Path, agency_index: str | None
) -> None:
    """Both docks hold the same three segments (the first stopped before its
    receipt, the second released them); the agency keeps one copy of each
    file and each dock's rows under its own name."""
    da, db, agency = tmp_path / "dock-a", tmp_path / "dock-b", tmp_path / "agency"
    with pytest.raises(DockError, match="before sending the receipt"):
        link.pull(da, stop_before_receipt=True)
    released = link.pull(db, name="dock2")
    assert len(released.released) == 3
    a = dock_sync.sync(da, agency, agency_index, "dock-a")
    b = dock_sync.sync(db, agency, agency_index, "dock-b")
    assert a.ok and b.ok, a.refused + b.refused
    assert len([p for p in a.pushed if p.endswith(".age")]) == 3
    assert [p for p in b.pushed if p.endswith(".age")] == []  # the same bytes were there
    assert f"units/{SERIAL}/chain.jsonl" in b.pushed  # dock B's chain extends dock A's
    target = agency_index or agency / "dock.sqlite"
    assert _rows_by_dock(target) == {"dock-a": 3, "dock-b": 3}
    for name, receipt in (("dock-a", None), ("dock-b", released.receipt)):
        idx = dock_index.Index.open(target, dock=name)
        try:
            assert {r["receipt"] for r in idx.held(SERIAL).values()} == {receipt}
            assert idx.unit(SERIAL) is not None
        finally:
            idx.close()
    _verifies(agency, link)
    assert _reports(agency, agency_index) == _reports(db)
    # the older dock again: its chain is behind the agency's, not rewritten
    again = dock_sync.sync(da, agency, agency_index, "dock-a")
    assert again.ok and again.pushed == [] and again.rows == 0
    # as an examiner checks it
    key = tmp_path / "agency.key"
    key.write_text(f"{link.unit.agency.identity}\n")
    mirror = agency / "units" / SERIAL
    cli = [sys.executable, "-m", "firmware.cli", "verify", str(mirror), "--identity", str(key)]
    ok = subprocess.run([*cli, "--segments-from", str(agency)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_segment_corrupted_on_the_dock_is_not_pushed_and_named(
    link: Link, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dd, agency = tmp_path / "dock", tmp_path / "agency"
    link.pull(dd)
    bad = sorted(dd.rglob("*.ts.age"))[1]
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 1  # one bit, the length unchanged
    bad.write_bytes(bytes(data))
    args = ["sync", "--dock-dir", str(dd), "--to", str(agency), "--name", "dock1", *EN_ARGS]
    assert dock_main(args) == 1
    out, err = capsys.readouterr()
    assert bad.name in err and "no longer match the index" in err and "Traceback" not in err
    assert "2 files pushed" not in out  # segments and the chain, key, receipt: more than 2
    pushed = {p.name for p in agency.rglob("*.ts.age")}
    assert pushed == {p.name for p in dd.rglob("*.ts.age")} - {bad.name}
    assert not list(agency.rglob("*.part"))
    assert bad.read_bytes() == bytes(data)  # left on the dock as it was
    idx = dock_index.Index.open(agency / "dock.sqlite", dock="dock1")
    try:
        assert bad.name not in idx.held(SERIAL) and len(idx.held(SERIAL)) == 2
    finally:
        idx.close()


def test_a_copy_that_reads_back_wrong_is_not_kept(
    link: Link, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agency's disk loses a write: the copy is read back from the disk
    after fsync, so the bad copy is neither renamed into place nor indexed."""
    import os

    dd, agency = tmp_path / "dock", tmp_path / "agency"
    link.pull(dd)
    real = os.posix_fadvise

    def bad_disk(fd: int, offset: int, length: int, advice: int) -> None:
        os.pwrite(fd, b"\0", 100)  # the sector holding byte 100 comes back as zero
        real(fd, offset, length, advice)

    with monkeypatch.context() as m:
        m.setattr(os, "posix_fadvise", bad_disk)
        result = dock_sync.sync(dd, agency, None, "dock1")
    assert len(result.refused) == 3 and all("read back" in str(r) for r in result.refused)
    assert not list(agency.rglob("*.ts.age")) and not list(agency.rglob("*.part"))
    idx = dock_index.Index.open(agency / "dock.sqlite", dock="dock1")
    try:
        assert idx.held(SERIAL) == {}
    finally:
        idx.close()
    healed = dock_sync.sync(dd, agency, None, "dock1")
    assert healed.ok and len([p for p in healed.pushed if p.endswith(".age")]) == 3
    _verifies(agency, link)


def test_a_rewritten_chain_is_refused(
    link: Link, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dd, agency = tmp_path / "dock", tmp_path / "agency"
    link.pull(dd)
    assert dock_sync.sync(dd, agency, None, "dock1").ok
    held = (agency / "units" / SERIAL / "chain.jsonl").read_bytes()
    chain = dd / "units" / SERIAL / "chain.jsonl"
    lines = chain.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"', b"'", 1)  # an earlier record, altered
    chain.write_bytes(b"".join(lines))
    args = ["sync", "--dock-dir", str(dd), "--to", str(agency), "--name", "dock1", *EN_ARGS]
    assert dock_main(args) == 1
    err = capsys.readouterr().err
    assert f"unit {SERIAL}" in err and "history rewritten" in err and "Traceback" not in err
    assert (agency / "units" / SERIAL / "chain.jsonl").read_bytes() == held


def test_an_index_made_before_docks_had_names_is_carried_over(tmp_path: Path) -> None:
    """A dock.sqlite of the first schema (no dock column): its rows move under
    the local dock's name, and commits still reach the disk (synchronous=FULL)."""
    db = sqlite3.connect(tmp_path / "dock.sqlite")
    db.executescript(
        """
        CREATE TABLE units (serial TEXT PRIMARY KEY, device_key TEXT NOT NULL, officer TEXT,
            head_seq INTEGER, last_pull_us INTEGER);
        CREATE TABLE segments (file TEXT PRIMARY KEY, serial TEXT NOT NULL,
            seq INTEGER NOT NULL, kind TEXT, ct_sha256 TEXT NOT NULL, pt_sha256 TEXT,
            ct_len INTEGER, start_wall_us INTEGER, end_wall_us INTEGER, officer TEXT,
            retention TEXT, marks TEXT, path TEXT NOT NULL, stored_us INTEGER NOT NULL,
            receipt TEXT);
        CREATE TABLE receipts (id TEXT PRIMARY KEY, serial TEXT NOT NULL, from_seq INTEGER,
            to_seq INTEGER, head TEXT, dock_time_us INTEGER, segments INTEGER,
            accepted INTEGER);
        INSERT INTO units VALUES ('BC-OLD-0001', 'fp', 'OFFICER-1', 9, 1700000000000000);
        INSERT INTO segments (file, serial, seq, ct_sha256, path, stored_us, receipt)
            VALUES ('f.ts.age', 'BC-OLD-0001', 3, 'ab', 'x/f.ts.age', 1700000000000000, 'r1');
        INSERT INTO receipts VALUES ('r1', 'BC-OLD-0001', 0, 9, 'h', 1, 1, 1);
        """
    )
    db.close()
    idx = dock_index.Index(tmp_path / "dock.sqlite")
    try:
        assert idx.serials() == ["BC-OLD-0001"]
        assert idx.unit("BC-OLD-0001")["device_key"] == "fp"
        row = idx.held("BC-OLD-0001")["f.ts.age"]
        assert (row["dock"], row["stored_us"], row["receipt"]) == ("local", 1700000000000000, "r1")
        assert idx.receipts("BC-OLD-0001")[0]["accepted"] is True
        with idx.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        idx.close()


def test_bad_input_is_named_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cases = [
        ["sync", "--dock-dir", str(tmp_path / "nowhere"), "--to", str(tmp_path / "agency")],
        ["report", "--dock-dir", str(tmp_path), "--index", "mysql://u@h/db"],
        ["report", "--dock-dir", str(tmp_path), "--index", "postgresql://u@/db?host=/nonexistent"],
    ]
    for argv in cases:
        assert dock_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("dock: ") and "Traceback" not in err, err
    (tmp_path / "dock").mkdir()
    (tmp_path / "dock" / "dock.sqlite").touch()
    same = ["sync", "--dock-dir", str(tmp_path / "dock"), "--to", str(tmp_path / "dock"), *EN_ARGS]
    assert dock_main(same) == 2 and "another folder" in capsys.readouterr().err
