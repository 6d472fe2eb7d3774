"""Disposal at the end of retention (issue 26; S0 art. 24-25): recordings
made on a clock set back 7 months and 3 years, pulled by a real dock;
`retention` lists exactly the expired, unheld ones; `dispose` refuses
without an approved request (and logs it), never touches a held one, and
with one leaves a signed statement and removes exactly that recording's
files; `bodycam verify` of the dock's copy then says they were disposed of
instead of failing, and finds an edited statement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dock import audit
from dock.compliance.web.accounts import add_person
from dock.index import Index
from sealing.recordings import recordings
from sealing.records import Stamp
from sealing.store import system_clock
from sealing.verify import verify_store

from .access_fixtures import approved_request
from .conftest import BODYCAM_DOCK, write_segment
from .english import EN_ARGS
from .export_fixtures import Link, start_link

DAY_US = 86_400_000_000
PEOPLE = [("孙法制", "legal", "法制科"), ("钱局长", "leader", ""), ("赵科长", "head", "稽查一科")]


@pytest.fixture
def pulled(tmp_path: Path) -> Iterator[tuple[Link, Path, list[int]]]:
    """Three recordings: marked evidence 3 years ago, unmarked 7 months ago
    (twice; the second gets a hold), pulled to a dock."""
    back = {"us": 0}

    def clock() -> Stamp:
        s = system_clock()
        return Stamp(s.mono_us, s.wall_us - back["us"], "synced", "gps")

    link = start_link(tmp_path, segments=0, clock=clock)
    store = link.store
    starts = []
    for days, marked in ((3 * 365 + 20, True), (7 * 31, False), (7 * 31, False)):
        back["us"] = days * DAY_US
        starts.append(store.append("record_start", {"cause": "button"}).seq)
        for _ in range(2):
            write_segment(store, os.urandom(20_000))
        if marked:
            store.append("mark", {"flag": "evidence", "retention": "evidence"})
        store.append("record_stop", {"cause": "button"})
    back["us"] = 0
    dock = tmp_path / "dock"
    link.pull(dock)
    for name, role, dept in PEOPLE:
        add_person(dock, name, role, dept, "a long enough password")
    yield link, dock, starts
    link.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BODYCAM_DOCK, *args, *EN_ARGS], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def _due(dock: Path) -> list[str]:
    r = _cli("retention", "--dock-dir", str(dock))
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def _files(dock: Path) -> set[str]:
    return {p.name for p in dock.glob("[0-9][0-9][0-9][0-9]/*/*/*/*.age")}


def _dispose(link: Link, dock: Path, seq: int, request: str, by: str = "孙法制") -> Any:
    key = link.dir / "docks" / "dock1" / "dock.key"
    return _cli("dispose", "--dock-dir", str(dock), "--serial", "BC-TEST-0001", "--recording",
                str(seq), "--request", request, "--by", by, "--key", str(key))  # fmt: skip


def test_due_recordings_are_disposed_of_only_on_approval_and_verify_explains(
    pulled: tuple[Link, Path, list[int]],
) -> None:
    link, dock, (old, recent, held) = pulled
    index = Index.open(dock / "dock.sqlite", dock=None)
    index.add_retention_change({"serial": "BC-TEST-0001", "recording": held, "at_us": 1,
                                "change": "hold", "value": "dispute", "by": "赵科长",
                                "reason": "当事人有异议", "approved_by": ""})  # fmt: skip
    index.close()
    due = _due(dock)
    assert len(due) == 2 and "evidence" in due[0] and "supervision" in due[1], due
    assert all(f"recording {s}:" in line for line, s in zip(due, (old, recent), strict=True)), due
    before = _files(dock)
    assert len(before) == 6
    # without an approved request: refused, logged, nothing removed
    r = _dispose(link, dock, recent, "nosuchrequest")
    assert (
        r.returncode == 1 and "no request nosuchrequest" in r.stderr and "Traceback" not in r.stderr
    )
    pending = approved_request(dock, "孙法制", "赵科长", act="dispose", serial="BC-TEST-0001")
    r = _dispose(link, dock, recent, pending)  # approved by a head: not the policy's approver
    assert r.returncode == 1 and "not of the role that approves disposals" in r.stderr, r.stderr
    rid = approved_request(dock, "孙法制", "钱局长", act="dispose", serial="BC-TEST-0001")
    r = _dispose(link, dock, held, rid)
    assert r.returncode == 1 and "is held" in r.stderr, r.stderr
    r = _dispose(link, dock, recent, rid, by="钱局长")  # only the filer uses a request
    assert r.returncode == 1 and "only they may use it" in r.stderr, r.stderr
    assert _files(dock) == before
    # with it: a statement, exactly this recording's files removed
    r = _dispose(link, dock, recent, rid)
    assert r.returncode == 0, r.stderr
    assert "2 files removed" in r.stdout
    report = verify_store(dock / "units" / "BC-TEST-0001", keep=True)
    rec = next(x for x in recordings(report.chain) if x.start.seq == recent)
    mine = {str(x.body["file"]) for x in rec.media()}
    assert before - _files(dock) == mine
    assert len(_due(dock)) == 1 and f"recording {old}:" in _due(dock)[0]
    r = _dispose(link, dock, recent, rid)
    assert r.returncode == 1 and "disposed of already" in r.stderr
    # the verifier of the dock's copy: disposed, not missing; an edited statement is found
    copy, cmd = dock / "units" / "BC-TEST-0001", [sys.executable, "-m", "firmware.cli", "verify"]
    v = subprocess.run([*cmd, str(copy), "--segments-from", str(dock), "--json"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert v.returncode == 0, v.stdout[-2000:] + v.stderr
    statuses = {s["file"]: s["status"] for s in _segments(v.stdout)}
    assert {statuses[f] for f in mine} == {"disposed"}, statuses
    (statement,) = (copy / "disposals").glob("*.json")
    body = json.loads(statement.read_text())
    body["disposal"]["approver"] = "someone else"
    statement.write_text(json.dumps(body, separators=(",", ":"), ensure_ascii=False))
    v = subprocess.run([*cmd, str(copy), "--segments-from", str(dock)], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert v.returncode == 1 and "disposals/" in v.stdout, v.stdout[-2000:]
    acts = [(e.who, e.result) for e in audit.read(dock)[0] if e.act == "dispose"]
    assert acts.count(("孙法制", "refused")) >= 3 and ("孙法制", "ok") in acts
    assert acts.index(("孙法制", "started")) < acts.index(("孙法制", "ok"))


def _segments(out: str) -> list[dict]:
    """The segments of `bodycam verify --json`'s one document."""
    return list(json.loads(out)["segments"])


def test_the_files_to_dispose_of_are_verified_and_no_others_are_read(
    pulled: tuple[Link, Path, list[int]],
) -> None:
    """A file of the recording to be disposed of that is not as sealed
    refuses the disposal, named, and nothing is removed (tampering is found,
    not destroyed unseen); one of another recording does not stop it."""
    link, dock, (old, recent, _held) = pulled
    report = verify_store(dock / "units" / "BC-TEST-0001", keep=True)
    files = {
        r.start.seq: sorted(str(x.body["file"]) for x in r.media())
        for r in recordings(report.chain)
    }
    rid = approved_request(dock, "孙法制", "钱局长", act="dispose", serial="BC-TEST-0001")
    for name in (files[old][0], files[recent][1]):
        (seg,) = dock.rglob(name)
        data = bytearray(seg.read_bytes())
        data[len(data) // 2] ^= 0x40
        seg.write_bytes(bytes(data))
    before = _files(dock)
    r = _dispose(link, dock, recent, rid)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "does not verify" in r.stderr and files[recent][1] in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and _files(dock) == before
    (seg,) = dock.rglob(files[recent][1])
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x40
    seg.write_bytes(bytes(data))
    r = _dispose(link, dock, recent, rid)  # the altered file of `old` is not read
    assert r.returncode == 0, r.stderr
    assert before - _files(dock) == set(files[recent])
