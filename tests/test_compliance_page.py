"""The supervisors' compliance page: the model (dock/compliance/model.py) on chains
a real recorder and a real dock made, and the page (`bodycam-dock page`) as a
supervisor sees it in Debian's chromium, driven by Playwright.

The dock is the one `bodycam demo` filled (a recording whose first resume
has its spoken note and whose second has none), copied; then the demo's unit
records again (a pause whose note is missing, no evidence mark) and is docked
by a dock whose clock says 30 hours later: a late export, made by docking
late, not written into the index."""

from __future__ import annotations

import csv
import http.client
import io
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from boot import layout as boot_layout
from dock.client import Client
from dock.compliance import model as compliance
from dock.dock_locale import dock_locale
from dock.index import Index
from dock.pull import pull
from dock.report import report
from firmware.cmd_export import start as start_export
from firmware.recording import run_scenario
from firmware.scenario import load
from firmware.unitclock import UnitClock
from link import pki
from link.inventory import read_known
from link.locale import Locale
from sealing.records import parse_line
from sealing.store import Stamp
from sealing.unit import open_unit

from .browsing import follow
from .conftest import BODYCAM_DOCK, DemoRun, make_unit, write_segment
from .english import EN_ARGS, english

ROOT = Path(__file__).resolve().parent.parent

SERIAL = "BC-DEMO-0001"
OFFICER = "OFFICER-DEMO"
DEMO_PASSWORD = "demo-password"  # firmware/cmd_demo.py provisions the unit with it
LATE_H = 30
SUPERVISOR, SUPERVISOR_PASSWORD = "sergeant.ames", "correct-battery-staple-42"

# The second day in the field: record, pause, resume with only traffic noise
# (the note is judged missing when the stop comes), stop; no evidence mark.
SECOND_RECORDING = """\
seconds = 22
size = "320x180"
clock = "unverified"
segment_seconds = 16
prerecord_seconds = 2

[[at]]
t = 0.5
gps_time = true

[[at]]
t = 2.0
press = "record"

[[at]]
t = 6.0
press = "function"

[[at]]
t = 8.0
press = "record"

[[sound]]
t = 8.0
source = "noise:-30"
seconds = 14

[[at]]
t = 18.0
hold = "record"
"""


@dataclass(frozen=True)
class LateDock:
    dir: Path  # the dock folder
    unit: Path  # the unit's folder
    second: int  # the second recording's record_start seq
    late_files: frozenset[str]  # the second recording's media, docked late


def _records(dock_dir: Path) -> list[Any]:
    chain = (dock_dir / "units" / SERIAL / "chain.jsonl").read_bytes()
    return [parse_line(line)[0] for line in chain.splitlines()]


def _held(dock_dir: Path) -> dict[str, Any]:
    index = Index.open(dock_dir / "dock.sqlite", dock=None)
    try:
        return index.held(SERIAL)
    finally:
        index.close()


def _unit(dock_dir: Path, late_after_s: int = compliance.LATE_AFTER_S) -> Any:
    index = Index.open(dock_dir / "dock.sqlite", dock=None)
    try:
        return compliance.read_unit(dock_dir, SERIAL, index, late_after_s)
    finally:
        index.close()


@pytest.fixture(scope="module")
def demo_dock(demo_run: DemoRun) -> Path:
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    return demo_run.dir / "dock"


@pytest.fixture(scope="module")
def late_dock(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> LateDock:
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    work = tmp_path_factory.mktemp("late") / "demo"
    shutil.copytree(demo_run.dir, work, symlinks=True)  # the session's demo stays as it was
    unit = boot_layout.unit_dir(work / "sd")
    before = len(_records(work / "dock"))
    (work / "second.toml").write_text(SECOND_RECORDING)
    run_scenario(unit, load(work / "second.toml", work), log=lambda _line: None)
    _dock_late(unit, work / "agency", work / "dock")
    records = _records(work / "dock")
    second = next(r for r in records[before:] if r.type == "record_start")
    media = {
        r.body["file"] for r in records if r.seq > second.seq and r.type in ("segment", "still")
    }
    assert media, "the second recording sealed no segment"
    return LateDock(work / "dock", unit, second.seq, frozenset(media))


def _dock_late(unit: Path, agency: Path, dock_dir: Path) -> None:
    """Dock the unit as the demo does (the dock package over mutual TLS), with a
    dock whose clock is LATE_H hours ahead of the recording."""
    clock = UnitClock()
    store = open_unit(unit, clock=clock.stamp, boot_body={"cause": "docked"})
    try:
        running = start_export(unit, store, clock, "127.0.0.1", 0)
        d = agency / "docks"
        client = Client(
            "127.0.0.1",
            running.address[1],
            pki.client_context(d / "dock1.crt", d / "dock1.key", agency / "ca.crt"),
        )
        key = serialization.load_pem_private_key((d / "dock1.key").read_bytes(), None)
        try:
            result = pull(
                client,
                dock_dir,
                key,  # type: ignore[arg-type]
                inventory=read_known(agency / "inventory.sqlite"),
                password=DEMO_PASSWORD,
                fingerprint_ok=True,
                progress=lambda *_: None,
                now=lambda: time.time() + LATE_H * 3600,
            )
        finally:
            client.close()
            running.close()
        assert result.pulled and result.released
    finally:
        store.close()


# -- the model ------------------------------------------------------------------


def test_a_missing_note_is_found_and_a_given_one_is_not(demo_dock: Path) -> None:
    records = _records(demo_dock)
    notes = [r for r in records if r.type == "resume_note"]
    given = [r.seq for r in notes if r.body["given"]]
    missing = [r.seq for r in notes if not r.body["given"]]
    assert len(given) == 1 and len(missing) == 1  # what the demo's scenario does
    unit = compliance.analyse(SERIAL, records, _held(demo_dock))
    found = unit.findings_of("note_missing")
    assert [f.seq for f in found] == missing
    resumes = [e for e in unit.events if e.kind == "resume"]
    assert [e.state for e in resumes] == ["given", "MISSING"]
    assert found[0].at_us == resumes[1].at_us  # shown where the officer resumed
    assert unit.recordings[0].notes_given == 1 and unit.recordings[0].notes_missing == 1
    # the chain as it stood before the unit judged the second note: nothing missing yet
    cut = records[: next(i for i, r in enumerate(records) if r.seq == missing[0])]
    earlier = compliance.analyse(SERIAL, cut, {})
    assert earlier.findings_of("note_missing") == []
    assert [e.state for e in earlier.events if e.kind == "resume"] == ["given", "pending"]


def test_a_late_export_is_found_only_where_the_dock_was_late(
    demo_dock: Path, late_dock: LateDock
) -> None:
    assert _unit(demo_dock).findings_of("late_export") == []  # the demo docked at once
    unit = _unit(late_dock.dir)
    late = unit.findings_of("late_export")
    held = _held(late_dock.dir)
    late_videos = {f for f in late_dock.late_files if f in held}
    assert late_videos and {str(f.text).split()[0] for f in late} == late_videos
    assert {f.recording for f in late} == {late_dock.second}
    (second,) = [v for v in unit.recordings if v.start_seq == late_dock.second]
    assert set(second.late) == late_videos
    assert all(v.late == () for v in unit.recordings if v.start_seq != late_dock.second)
    assert all(f"{LATE_H - 1}." in str(f.text) or f"{LATE_H}." in str(f.text) for f in late)
    # the threshold is a parameter: at 31 h nothing is late
    assert _unit(late_dock.dir, (LATE_H + 1) * 3600).findings_of("late_export") == []


def test_an_unmarked_recording_is_supervision_not_a_finding(late_dock: LateDock) -> None:
    """S0 art. 24-25: most supervision records are rightly unmarked; the mark
    decides the class (and so how long it is kept), not a finding."""
    unit = _unit(late_dock.dir)
    assert len(unit.recordings) == 2
    marked, unmarked = unit.recordings
    assert marked.marks == ("evidence",) and unmarked.marks == ()
    assert (marked.retention, unmarked.retention) == ("evidence", "supervision")
    assert marked.expires is not None and unmarked.expires is not None
    assert (marked.expires - unmarked.expires).days > 540  # 24 months against 6
    assert not [f for f in unit.findings if f.kind == "unmarked"]
    # the second recording also lost its note: found there, at its resume
    assert {f.recording for f in unit.findings_of("note_missing")} == {
        marked.start_seq,
        late_dock.second,
    }


class _Clock:
    """A unit clock the test moves: segments sealed with a break between them."""

    def __init__(self) -> None:
        self.mono, self.wall = 1_000_000, 1_795_000_000_000_000

    def __call__(self) -> Stamp:
        self.mono += 100_000
        self.wall += 100_000
        return Stamp(self.mono, self.wall, "synced", "gps")

    def skip(self, seconds: float) -> None:
        self.mono += int(seconds * 1e6)
        self.wall += int(seconds * 1e6)


@pytest.mark.parametrize(
    ("between", "skip_s", "unexplained"),
    [
        ([], 5.0, True),  # segments stop for 5 s and nothing says why
        ([("pause", {"reason": "privacy"}), ("resume", {})], 5.0, False),
        ([], 0.3, False),  # the rollover from one segment to the next is not a gap
    ],
)
def test_an_unexplained_gap_is_found(
    tmp_path: Path, between: list[tuple[str, dict]], skip_s: float, unexplained: bool
) -> None:
    unit = make_unit(tmp_path / "unit")
    clock = _Clock()
    with unit.open(clock=clock, boot_body={"cause": "test"}) as store:
        store.append("record_start", {"cause": "button"})
        write_segment(store, os.urandom(20_000))
        for kind, body in between:
            store.append(kind, body)
        clock.skip(skip_s)
        write_segment(store, os.urandom(20_000))
        store.append("record_stop", {"cause": "button"})
        records = store.records()
    got = compliance.analyse("BC-TEST-0001", records, {})
    found = got.findings_of("unexplained_gap")
    assert len(found) == int(unexplained)
    assert [s.kind == "gap" for s in got.spans].count(True) == int(unexplained)
    if unexplained:
        assert "UNEXPLAINED" in str(next(e.text for e in got.events if e.kind == "gap"))
    elif between:
        assert str(got.gaps[0].explained_by) == "pause (privacy)"


def test_each_recordings_verification_state(demo_dock: Path, late_dock: LateDock) -> None:
    records = _records(demo_dock)
    (rec,) = compliance.analyse(SERIAL, records, {}).recordings
    files = list(rec.segments)
    ok = compliance.Verification(checked_us=1, head_seq=records[-1].seq, ok=True)

    def state(v: compliance.Verification | None) -> str:
        (only,) = compliance.analyse(SERIAL, records, {}, v).recordings
        return only.verification

    assert state(ok) == "verified"
    assert state(None) == "not checked"
    assert state(replace(ok, head_seq=rec.last_seq - 1)) == "not checked"  # older than it
    assert state(replace(ok, missing=frozenset(files[:1]))) == "incomplete"
    assert state(replace(ok, missing=frozenset({"BC-DEMO-0001_other.ts.age"}))) == "verified"
    assert state(replace(ok, ok=False, problems=("bad signature",))) == "failed"
    # what the pulls wrote: both recordings of the dock that docked twice are verified
    written = late_dock.dir / "units" / SERIAL / "verification.json"
    assert written.is_file(), "the pull wrote no verification.json"
    unit = _unit(late_dock.dir)
    assert {v.verification for v in unit.recordings} == {"verified"}
    assert unit.verification is not None and unit.verification.head_seq == unit.head_seq
    with pytest.raises(ValueError):
        compliance.Verification.from_json({"checked_us": 1, "head_seq": "7", "ok": True})


def test_the_dock_report_is_the_models(late_dock: LateDock) -> None:
    unit = _unit(late_dock.dir)
    text = report(late_dock.dir, english())
    n_late = len(unit.findings_of("late_export"))
    for line in (
        f"unit {SERIAL} (officer {OFFICER}, chain 0..{unit.head_seq})",
        "spoken reasons on resuming: 1 given, 2 missing",
        f"late export: {n_late} segments exported more than 24 h after recording",
        "retention: 1 of 2 recordings marked as evidence, 0 held",
        "verification: 2 verified",
        "gaps: 3, 0 unexplained",
    ):
        assert line in text, text


# -- the page -------------------------------------------------------------------


def _dock_py(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BODYCAM_DOCK, *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        cwd=ROOT,
    )


@dataclass(frozen=True)
class Page:
    url: str  # http://127.0.0.1:PORT/
    dock: LateDock
    day: date  # the day of the late, unmarked recording with a missing note


@pytest.fixture(scope="module")
def page_server(late_dock: LateDock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    pw = tmp_path_factory.mktemp("supervisor") / "pw"
    pw.write_text(SUPERVISOR_PASSWORD + "\n")
    added = _dock_py(
        "supervisor-add", "--dock-dir", str(late_dock.dir), "--name", SUPERVISOR,
        "--password-file", str(pw), *EN_ARGS,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    proc = subprocess.Popen(
        [*BODYCAM_DOCK, "page", "--dock-dir", str(late_dock.dir), "--port", "0", *EN_ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, f"no address printed: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        unit = _unit(late_dock.dir)
        (second,) = [v for v in unit.recordings if v.start_seq == late_dock.second]
        day = compliance.day_of(second.start_us, dock_locale(late_dock.dir))
        yield Page(found.group(0), late_dock, day)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _artifacts() -> Path:
    base = os.environ.get("BODYCAM_ARTIFACTS")
    out = Path(base) / "screenshots" if base else ROOT / ".artifacts" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _sign_in(page: Any, base: str, password: str = SUPERVISOR_PASSWORD) -> None:
    page.fill("#name", SUPERVISOR)
    page.fill("#password", password)
    follow(page, "form.login button[type=submit]")


def test_a_supervisor_signs_in_and_sees_a_units_day(browser: Any, page_server: Page) -> None:
    shots = _artifacts()
    base, day = page_server.url, page_server.day.isoformat()
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    page.goto(base)
    assert re.search(r"/login\?next=/$", page.url), page.url  # nothing without signing in
    page.screenshot(path=str(shots / "01-sign-in.png"), full_page=True)

    _sign_in(page, base, password="not-the-password-at-all")
    assert "/login" in page.url
    assert page.locator("#login-error").inner_text() == "Wrong name or password."
    assert page.locator("#units").count() == 0
    page.screenshot(path=str(shots / "02-wrong-password.png"), full_page=True)

    _sign_in(page, base)
    assert page.url == base
    units = page.locator("#units")
    assert SERIAL in units.inner_text() and OFFICER in page.locator("#officers").inner_text()
    headers = [h.strip() for h in units.locator("tr").first.locator("th").all_inner_texts()]
    row = units.locator("tr", has_text=SERIAL).locator("td").all_inner_texts()
    counts = dict(zip(headers, row, strict=True))
    n_late = len(_unit(page_server.dock.dir).findings_of("late_export"))
    assert counts["Late export"] == str(n_late) and n_late > 0
    assert counts["Spoken reason missing"] == "2" and "Unmarked recording" not in counts
    page.screenshot(path=str(shots / "03-overview.png"), full_page=True)

    follow(page, f"#units a:text-is('{SERIAL}')")
    follow(page, f"#days a:text-is('{day}')")
    assert page.url == f"{base}unit/{SERIAL}/{day}"
    svg = page.locator("figure svg")
    assert svg.count() == 1 and svg.is_visible()
    # the picture itself marks the missing note, and its legend says what is what
    assert svg.locator("text", has_text=re.compile(r"^reason MISSING$")).count() >= 1
    assert svg.locator("text", has_text="gap, unexplained").count() == 1
    assert re.search(r"recording \d+ \(\d\d:\d\d:\d\d\)", svg.text_content())
    findings = page.locator("#findings").inner_text()
    assert "Spoken reason missing" in findings and "Late export" in findings
    assert "Unmarked recording" not in findings
    events = page.locator("#events tr", has_text="MISSING")
    assert events.count() >= 1 and "spoken reason MISSING" in events.first.inner_text()
    rec_row = page.locator("#recordings tr", has_text="stop (the officer pressed the button)").last
    assert "verified" in rec_row.inner_text()
    page.screenshot(path=str(shots / "04-unit-day.png"), full_page=True)

    with page.expect_download() as got:
        page.click("#csv")
    saved = shots / f"{SERIAL}_{day}.csv"
    got.value.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))  # BOM: Excel
    kinds = {r["Kind"] for r in rows if r["Row"] == "finding"}
    assert {"Spoken reason missing", "Late export"} <= kinds and "Unmarked recording" not in kinds
    assert any(r["Kind"] == "resume" and r["State"] == "MISSING" for r in rows)
    # codes stay the same in every language: finding keys, event kinds, states
    assert {r["Code"] for r in rows if r["Row"] == "finding"} >= {"note_missing", "late_export"}
    assert any(r["Code"] == "resume" and r["State code"] == "MISSING" for r in rows)
    # the page's day is the agency's; its UTC time may fall on the day before
    assert all(r["Unit"] == SERIAL and r["Time (Asia/Shanghai)"].startswith(day) for r in rows)
    assert all(r["Time (Asia/Shanghai)"].endswith(" +08:00") for r in rows)

    follow(page, "header nav a:text-is('Overview')")
    follow(page, f"#officers a:text-is('{OFFICER}')")
    assert page.locator("figure svg").count() == 1
    assert day in page.locator("figure svg").text_content()  # one bar per day, labelled
    page.screenshot(path=str(shots / "05-officer.png"), full_page=True)
    ctx.close()
    for name in ("01-sign-in", "02-wrong-password", "03-overview", "04-unit-day", "05-officer"):
        assert (shots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_printable_pdf_bad_input_and_signing_out(
    browser: Any, page_server: Page, tmp_path: Path
) -> None:
    shots = _artifacts()
    base, day = page_server.url, page_server.day.isoformat()
    ctx = browser.new_context(accept_downloads=True)
    page = ctx.new_page()
    page.goto(f"{base}unit/{SERIAL}/{day}")
    assert "/login?next=" in page.url
    _sign_in(page, base)
    assert page.url == f"{base}unit/{SERIAL}/{day}"  # back where the supervisor was going

    with page.expect_download() as got:
        page.click("#pdf")
    pdf = tmp_path / "day.pdf"
    got.value.save_as(pdf)
    shutil.copyfile(pdf, shots / f"{SERIAL}_{day}.pdf")
    text = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    text = " ".join(text.split())  # table cells wrap: compare words, not lines
    for needle in (f"Unit {SERIAL}, {day} (Asia/Shanghai)", "Spoken reason missing",
                   "Late export", "spoken reason MISSING", "time of day (Asia/Shanghai)",
                   "reason MISSING"):  # fmt: skip
        assert needle in text, text[:3000]
    assert "Sign out" not in text and "Printable PDF" not in text  # the page, for the file

    for path, code, says in (
        (f"unit/BC-NONE-0001/{day}", 404, "No unit BC-NONE-0001"),
        (f"unit/{SERIAL}/2026-13-45", 400, "not a day of the calendar"),
        (f"unit/{SERIAL}/yesterday", 400, "give it as YYYY-MM-DD"),
        ("officer/NOBODY", 404, "No officer NOBODY"),
        ("unit/%3Cb%3Ebold/2026-01-01", 404, "No unit <b>bold on this dock"),
    ):
        resp = page.goto(base + path)
        assert resp is not None and resp.status == code, path
        message = page.locator("#error-message").inner_text()
        assert says in message and "Traceback" not in page.content()
    assert page.locator("main b").count() == 0  # the unit name was text, not markup
    page.screenshot(path=str(shots / "06-not-found.png"), full_page=True)

    follow(page, "header button:text-is('Sign out')")
    assert "/login" in page.url
    page.goto(f"{base}unit/{SERIAL}")
    assert "/login?next=" in page.url
    ctx.close()


def _get(url: str, path: str, method: str = "GET", **kw: Any) -> http.client.HTTPResponse:
    host, port = re.match(r"http://([\d.]+):(\d+)/", url).groups()  # type: ignore[union-attr]
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(method, path, **kw)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def test_unauthenticated_requests_are_sent_to_sign_in(page_server: Page) -> None:
    day = page_server.day.isoformat()
    for path in (
        "/",
        f"/unit/{SERIAL}",
        f"/unit/{SERIAL}/{day}",
        f"/unit/{SERIAL}/{day}/events.csv",
        f"/unit/{SERIAL}/{day}/report.pdf",
        f"/officer/{OFFICER}",
        f"/officer/{OFFICER}/events.csv",
    ):
        resp = _get(page_server.url, path)
        assert resp.status == 302, path
        assert resp.headers["Location"].startswith("/login?next="), path
    # a form posted without its CSRF token, another Host (DNS rebinding), a PUT
    form = {
        "body": "name=x&password=y",
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    assert _get(page_server.url, "/login", "POST", **form).status == 400
    assert _get(page_server.url, "/login", headers={"Host": "evil.example"}).status == 400
    assert _get(page_server.url, "/", "PUT").status in (302, 405)
    login = _get(page_server.url, "/login")
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_the_page_is_never_served_beyond_loopback(late_dock: LateDock, tmp_path: Path) -> None:
    for host in ("0.0.0.0", "192.168.7.1", "example.org"):
        r = _dock_py(
            "page", "--dock-dir", str(late_dock.dir), "--host", host, "--port", "0", *EN_ARGS
        )
        assert r.returncode == 2 and r.stderr.startswith("dock: "), r.stderr
        assert "loopback" in r.stderr and "Traceback" not in r.stderr
    empty = tmp_path / "dock"
    empty.mkdir()
    r = _dock_py("page", "--dock-dir", str(empty), "--port", "0", *EN_ARGS)
    assert r.returncode == 2 and "no supervisors or other people" in r.stderr


def test_supervisor_add_refuses_weak_passwords_and_odd_names(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    for password, name, says in (
        ("", "ames", "empty"),
        ("short-pw", "ames", "at least 12"),
        (SUPERVISOR_PASSWORD, "am\x1bes", "control character"),
    ):
        pw.write_text(password + "\n")
        r = _dock_py("supervisor-add", "--dock-dir", str(tmp_path), "--name", name,
                     "--password-file", str(pw), *EN_ARGS)  # fmt: skip
        assert r.returncode == 2 and r.stderr.startswith("dock: ") and says in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "dock.sqlite").exists()  # nothing made for a refused account
    pw.write_text(SUPERVISOR_PASSWORD + "\n")
    r = _dock_py("supervisor-add", "--dock-dir", str(tmp_path), "--name", "ames",
                 "--password-file", str(pw))  # fmt: skip
    assert r.returncode == 0, r.stderr
    made = tmp_path / "dock.sqlite"  # the accounts are in the index, with the password's hash
    assert made.stat().st_mode & 0o077 == 0  # for the dock's user only
    assert SUPERVISOR_PASSWORD.encode() not in made.read_bytes()


def test_an_internal_error_is_logged_and_answered_shortly(
    late_dock: LateDock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from dock.compliance.web.accounts import add_supervisor
    from dock.compliance.web.serve import create_app

    app = create_app(late_dock.dir, locale=Locale("en"))
    client = app.test_client()
    form = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    add_supervisor(late_dock.dir, "tester", SUPERVISOR_PASSWORD)
    signed = client.post("/login", data={"csrf": token, "name": "tester",
                                         "password": SUPERVISOR_PASSWORD})  # fmt: skip
    assert signed.status_code == 302 and signed.headers["Location"] == "/"

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(compliance, "read_dock", broken)
    resp = client.get("/")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 500 and "it was logged" in body
    assert "disk on fire" not in body and "Traceback" not in body
    assert any("disk on fire" in (r.exc_text or "") for r in caplog.records)
