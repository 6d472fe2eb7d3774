"""The usage ledger (issue 25, S0 annex 1): a docked unit checked out to an
officer with an approver. The unit seals the dock's signed assignment and
names the new officer in its records and on its watermark; the ledger has
both periods; check-in closes the second; a forged or unapproved check-out
is refused."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from capture.sei import FrameTime
from capture.watermark import text_for
from dock import audit
from dock.compliance import model as compliance
from dock.compliance.web.accounts import add_person
from dock.index import Index
from firmware.recording import run_scenario
from firmware.runtime import Recorder
from firmware.scenario import parse
from link import messages, routes
from link.locale import Locale
from sealing.canonical import b64, unb64
from sealing.keys import fingerprint
from sealing.verify import verify_store

from .conftest import BODYCAM_DOCK, make_unit
from .english import EN_ARGS
from .export_fixtures import Link, start_link
from .media_check import decrypted_segments
from .test_page_security import Client, in_process
from .test_watermark_sei import _diff, _gray

PASSWORD = "correct horse battery staple"
PEOPLE = [
    ("张三", "officer", "稽查一科"),
    ("李四", "officer", "稽查一科"),
    ("王五", "officer", "统计二科"),
    ("赵科长", "head", "稽查一科"),
    ("钱科长", "head", "统计二科"),
    ("周审计", "auditor", "审计科"),
]


@pytest.fixture
def link(tmp_path: Path) -> Any:
    link = start_link(tmp_path / "unit", segments=1, size=50_000)
    yield link
    link.running.close()
    link.store.close()


def _dock(link: Link, dock_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    creds = link.dir / "docks" / "dock1"
    return subprocess.run(
        [*BODYCAM_DOCK, *args, *EN_ARGS, "--dock-dir", str(dock_dir),
         "--unit", "{}:{}".format(*link.running.address),
         "--cert", str(creds / "dock.crt"), "--key", str(creds / "dock.key"),
         "--ca", str(link.dir / "ca.crt"), "--inventory", str(link.inventory)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_checkout_seals_a_signed_assignment_and_the_ledger_has_both_periods(
    link: Link, tmp_path: Path
) -> None:
    dock = tmp_path / "dock"
    dock.mkdir()
    for name, role, department in PEOPLE:
        add_person(dock, name, role, department, PASSWORD)
    # refused before anything reaches the unit: an approver of another
    # department, an officer without an account, an approver who is an officer
    for officer, approver, says in (
        ("李四", "钱科长", "may not approve"),
        ("无名", "赵科长", "no officer's account"),
        ("李四", "王五", "may not approve"),
    ):
        r = _dock(link, dock, "checkout", "--officer", officer, "--approver", approver)
        assert r.returncode == 1 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not [x for x in link.store.records() if x.type == "officer"]

    first = _dock(link, dock, "checkout", "--officer", "张三", "--approver", "赵科长")
    assert first.returncode == 0 and "checked out to 张三" in first.stdout, first.stderr
    second = _dock(link, dock, "checkout", "--officer", "李四", "--approver", "赵科长")
    assert second.returncode == 0, second.stderr
    # the unit's chain: the assignment as the dock signed it, verifiable by its key
    rec = [x for x in link.store.records() if x.type == "officer"][-1]
    assert rec.body["to"] == "李四" and rec.body["from"] == "张三" and rec.officer == "李四"
    assert rec.body["approver"] == "赵科长" and rec.body["cause"] == "checkout"
    signed = messages.Assignment(link.store.serial, "李四", "赵科长", rec.body["dock_key"],
                                 rec.body["at_us"], "").signed_bytes()  # fmt: skip
    link.unit.agency.dock.public_key().verify(unb64(rec.body["signature"]), signed)
    assert link.store.officer == "李四"  # every record from now on names the new holder
    assert verify_store(link.unit.path).ok
    back = _dock(link, dock, "checkin")
    assert back.returncode == 0 and "checked in from 李四" in back.stdout, back.stderr
    index = Index.open(dock / "dock.sqlite")
    try:
        rows = index.ledger(link.store.serial)
    finally:
        index.close()
    assert [(r["officer"], r["approver"]) for r in rows] == [("张三", "赵科长"), ("李四", "赵科长")]
    assert rows[0]["in_us"] == rows[1]["out_us"]  # handed straight on: no period without holder
    assert rows[1]["in_us"] is not None and rows[1]["in_us"] >= rows[1]["out_us"]
    again = _dock(link, dock, "checkin")
    assert again.returncode == 1 and "not checked out" in again.stderr
    entries, broken = audit.read(dock)
    assert broken is None
    assert [e.act for e in entries if e.act in ("checkout", "checkin")] == [
        "checkout", "checkout", "checkin",
    ]  # fmt: skip

    # the ledger page and its CSV, as the regulation's table, for the head of the section
    with in_process(dock, locale=Locale("zh-CN", "Asia/Shanghai")) as base:
        head = Client(base)
        assert head.sign_in("赵科长", PASSWORD).status == 302
        page = head.get("/ledger")
        assert page.status == 200
        for needle in ("使用台账", "张三", "李四", "赵科长", link.store.serial, "+08:00"):
            assert needle in page.text, needle
        got = head.get("/ledger.csv")
        rows_csv = list(csv.reader(io.StringIO(got.text.lstrip("\ufeff"))))
        assert len(rows_csv) == 3 and rows_csv[1][2] == "张三" and rows_csv[2][2] == "李四"
        pdf = head.request("GET", "/ledger.pdf")
        assert pdf.status == 200 and pdf.body.startswith(b"%PDF")
        pdftotext = ["pdftotext", "-layout", "-", "-"]
        printed = subprocess.run(pdftotext, input=pdf.body, capture_output=True, check=True,
                                 timeout=60).stdout.decode()  # fmt: skip
        for needle in ("使用台账", "张三", "李四", "赵科长", link.store.serial):
            assert needle in printed, needle
        other = Client(base)
        assert other.sign_in("钱科长", PASSWORD).status == 302
        assert "李四" not in other.get("/ledger").text  # another section's head: not theirs
        officer = Client(base)
        assert officer.sign_in("王五", PASSWORD).status == 302
        assert "张三" not in officer.get("/ledger").text
    # the unit's own events, as the page shows them once pulled: each hand-over
    events = compliance.analyse(link.store.serial, link.store.records(), {}).events
    handed = [str(e.text) for e in events if e.kind == "checkout"]
    assert handed == ["handed to 张三 (approved by 赵科长)", "handed to 李四 (approved by 赵科长)"]


def test_a_forged_or_misdirected_assignment_is_refused_and_recorded(link: Link) -> None:
    def send(key: Ed25519PrivateKey, serial: str) -> tuple[int, Any]:
        a = messages.Assignment(serial, "李四", "赵科长", fingerprint(key.public_key()), 1, "")
        body = {**a.signed_fields(), "signature": b64(key.sign(a.signed_bytes()))}
        client = link.client("dock1")
        try:
            return client.json(routes.ASSIGN, body)
        finally:
            client.close()

    code, answer = send(Ed25519PrivateKey.generate(), link.store.serial)
    assert code == 403 and "no enrolled dock" in answer["error"]
    code, answer = send(link.unit.agency.dock, "BC-OTHER-0001")
    assert code == 403 and "BC-OTHER-0001" in answer["error"]
    faults = [x.body for x in link.store.records() if x.type == "fault"]
    assert [f["what"] for f in faults[-2:]] == ["assignment", "assignment"]
    assert link.store.officer != "李四"


def test_the_recorder_names_the_new_officer_on_its_records_and_watermark(tmp_path: Path) -> None:
    """The same check-out through a running recorder: refused while recording,
    taken when idle; the next recording's records and its burned-in strip
    name the new officer."""
    unit = make_unit(tmp_path / "unit", officer="张三")
    key = unit.agency.dock
    answers: list[tuple[int, dict[str, Any]]] = []
    strips: list[str] = []

    def assignment(officer: str) -> messages.Assignment:
        a = messages.Assignment("BC-TEST-0001", officer, "赵科长", fingerprint(key.public_key()),
                                1, "")  # fmt: skip
        return messages.Assignment(*list(a.signed_fields().values()),
                                   b64(key.sign(a.signed_bytes())))  # fmt: skip

    held: dict[str, Recorder] = {}

    def on_ready(rec: Recorder) -> None:
        held["rec"] = rec
        answers.append(rec._checkout(assignment("李四"), "dock1"))

    def log(line: str) -> None:  # on the loop thread: once recording, try again
        if line.startswith("capture started") and len(answers) == 1:
            answers.append(held["rec"]._checkout(assignment("王五"), "dock1"))

    presses = [{"t": 1, "press": "record"}, {"t": 4, "hold": "record"}]
    day = {"seconds": 6, "size": "320x180", "clock": "synced", "segment_seconds": 8,
           "prerecord_seconds": 1, "at": presses}  # fmt: skip
    rec = run_scenario(unit.path, parse(day, tmp_path), on_ready=on_ready, log=log)
    strips.append(str(rec.watermark.officer))
    assert answers[0][0] == 200 and strips == ["李四"]
    # while recording the unit refused (its officer cannot change mid-recording)
    code, said = answers[1]
    assert code == 409 and "stop the recording" in said["error"]
    report = verify_store(unit.path, identity=unit.agency.identity)
    assert report.ok, report.problems
    start = next(r for r in report.records if r["type"] == "record_start")
    assert start["officer"] == "李四"
    assert all(r["officer"] == "李四" for r in report.records if r["seq"] > start["seq"])
    refused = [r["body"] for r in report.records if r["type"] == "fault"]
    assert any(f.get("what") == "assignment" for f in refused)
    # and the burned-in strip of the recording's frames reads 李四, not 张三
    (body, data), *_ = [(r["body"], d) for r, d in
                        decrypted_segments(unit.path, unit.agency.identity)]  # fmt: skip
    with av.open(io.BytesIO(data), format="mpegts") as c:
        stream = c.streams.video[0]
        frame = next(c.decode(stream))
        picture = _gray(frame)
    at = FrameTime(body["start"]["wall_us"], "synced", "x")  # the first frame: the start
    new = _diff(picture, text_for("BC-TEST-0001", "李四", at, rec.face))
    old = _diff(picture, text_for("BC-TEST-0001", "张三", at, rec.face))
    assert new < 12 and old > 2 * new, (new, old)


def test_the_selftest_names_who_holds_the_unit_after_a_check_out(tmp_path: Path) -> None:
    """The pre-use check (S0 art. 8) shows the holder: the flashed officer
    until a dock's check-out names another."""
    unit = make_unit(tmp_path / "unit", officer="张三")

    def holder() -> str:
        r = subprocess.run(
            [sys.executable, "-m", "firmware.cli", "selftest", "--unit", str(unit.path)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert "Traceback" not in r.stderr, r.stderr
        (line,) = [x for x in r.stdout.splitlines() if x.startswith("holder")]
        return line.split(None, 1)[1]

    assert holder() == "张三"
    with unit.open(boot_body={"cause": "test"}) as store:
        store.set_officer("李四", {"approver": "赵科长"})
    assert holder() == "李四"
