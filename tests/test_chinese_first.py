"""Chinese first (issue 24), through the dock's real interfaces: what a
person reads is Simplified Chinese on Asia/Shanghai time by default, English
one setting away; the catalog is complete; every character the dock shows is
in its fonts; resume notes are joined by the chain's links; a supervisor
named in Chinese signs in."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from dock import fonts
from dock.compliance import model as compliance
from dock.compliance.web.accounts import add_supervisor
from dock.compliance.web.errors import PageError
from link.locale import Locale
from sealing import layout
from sealing.recordings import note_of, resume_notes
from sealing.records import Record, Stamp

from .access_fixtures import approved_request
from .conftest import BODYCAM_DOCK, DemoRun, chain_to_dock, make_unit, write_segment
from .english import EN_ARGS
from .export_fixtures import start_link
from .test_page_security import Client, in_process

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "dock" / "locale" / "zh_CN" / "LC_MESSAGES" / "bodycam_dock.po"
SERIAL = "BC-TEST-0001"
SHANGHAI = Locale("zh-CN", "Asia/Shanghai")
# names in several scripts, a rare character (CJK Ext. E, U+2C317) among them
NAMES = ("张三", "李科长", "王𬌗", "Ελένη", "Мария")


def _dock(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BODYCAM_DOCK, *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


# -- the text report ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A dock that pulled one recording with a pause and a missing spoken
    reason; and the wall time its recording started at."""
    base = tmp_path_factory.mktemp("zh")
    link = start_link(base, segments=0)
    try:
        s = link.store
        s.append("record_start", {"cause": "button"})
        write_segment(s, os.urandom(40_000))
        s.append("pause", {"reason": "to_be_stated"})
        s.append("resume", {"cause": "button"})
        s.append("resume_note", {"given": False, "speech_s": 0})
        write_segment(s, os.urandom(40_000))
        s.append("record_stop", {"cause": "button"})
        start = next(r for r in s.records() if r.type == "record_start").stamp.wall_us
        link.pull()
    finally:
        link.close()
    return base / "dockstore", start


def test_the_report_is_chinese_by_default_and_english_on_request(
    pulled: tuple[Path, int],
) -> None:
    dock, start_us = pulled
    local = SHANGHAI.local_text(start_us)
    assert local.endswith(" +08:00")
    zh = _dock("report", "--dock-dir", str(dock))
    assert zh.returncode == 0, zh.stderr
    for needle in (
        f"执法记录仪 {SERIAL}（执法人员 OFFICER-7",
        "时间为 Asia/Shanghai",
        "暂停：1 次（恢复录制时说明理由）",
        "恢复录制时的语音说明：已作 0 次，缺少 1 次",
        f"号录制：{local} 至 ",
    ):
        assert needle in zh.stdout, zh.stdout
    # no English word of the report's own (serials, codes and names are data)
    words = set(re.findall(r"[A-Za-z]{3,}", zh.stdout)) - {"Asia", "Shanghai", "OFFICER"}
    assert words <= {"BC", "TEST"}, (words, zh.stdout)

    en = _dock("report", "--dock-dir", str(dock), *EN_ARGS)
    assert en.returncode == 0, en.stderr
    for needle in (
        f"unit {SERIAL} (officer OFFICER-7",
        "times in Asia/Shanghai",
        "pauses: 1 (reason to be stated on resuming)",
        "spoken reasons on resuming: 0 given, 1 missing",
        f": {local} to ",
    ):
        assert needle in en.stdout, en.stdout
    assert not re.search(r"[\u4e00-\u9fff]", en.stdout), en.stdout


# -- the catalog and the fonts --------------------------------------------------------


def test_the_catalogs_are_complete_and_current(tmp_path: Path) -> None:
    """tools/catalogs.py check passes, and the template it checks against
    holds every msgid of today's code (a text added without `extract` would
    otherwise pass untranslated)."""
    r = subprocess.run(
        [sys.executable, "tools/catalogs.py", "check"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0 and "catalogs complete" in r.stdout, r.stdout + r.stderr

    # and it checks the code as it is: a msgid added without `extract` fails
    # it (in a copy of the tree: the checkout itself is never written)
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "dock", copy / "dock", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "catalogs.py", copy / "tools")
    shutil.copy(ROOT / "babel.cfg", copy)
    (copy / "dock" / "probe.py").write_text(
        'from dock.texts import msg\n\nPROBE = msg("a text nobody translated")\n'
    )
    stale = subprocess.run(
        [sys.executable, "tools/catalogs.py", "check"],
        capture_output=True, text=True, timeout=120, cwd=copy,
    )  # fmt: skip
    assert stale.returncode == 1 and "a text nobody translated" in stale.stdout, stale.stdout


def _cmap(font: fonts.FontFile) -> set[int]:
    from fontTools.ttLib import TTFont

    with TTFont(font.path, fontNumber=font.index, lazy=True) as f:
        return set(f.getBestCmap())


def test_every_character_shown_is_in_the_docks_fonts() -> None:
    """The Chinese of the catalog and names in several scripts: each
    character is in the first of the dock's families, in order, that holds
    it; the catalog's Chinese and the Chinese names in the first (Noto Sans
    CJK SC), so that no text falls back to a missing glyph's box."""
    pytest.importorskip("fontTools")
    from babel.messages.pofile import read_po

    found = [fonts.find(f) for f in fonts.FAMILIES]
    assert all(found), f"install {fonts.missing()}"
    cmaps = [_cmap(f) for f in found if f is not None]
    with PO.open("rb") as f:
        catalog = read_po(f)
    shown = "".join(
        s
        for m in catalog
        if m.id
        for s in (m.string if isinstance(m.string, tuple) else (m.string,))
    )
    chinese = {c for c in shown + "".join(NAMES[:3]) if unicodedata.category(c) != "Cc"}
    assert "𬌗" in chinese and len(chinese) > 500
    lacking = sorted(c for c in chinese if ord(c) not in cmaps[0])
    assert lacking == [], [f"{c} U+{ord(c):04X}" for c in lacking]
    other = {c for c in "".join(NAMES[3:]) if not c.isspace()}
    uncovered = sorted(c for c in other if not any(ord(c) in m for m in cmaps))
    assert uncovered == [], uncovered


# -- the court report -----------------------------------------------------------------


def _pdf_text(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip


@pytest.mark.slow
def test_the_court_report_is_chinese_with_local_time_and_the_copiers_name(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    """The demo's officer is OFFICER-DEMO; the examiner making the copy is
    张三, named in the report as its copier (R20). English: test_court_copy."""
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    out = tmp_path / "case"
    r = _dock(
        "export-case", "--dock-dir", str(demo_run.dir / "dock"), "--serial", "BC-DEMO-0001",
        "--recording", "4", "--examiner", "张三", "--out", str(out),
        "--agency", str(demo_run.dir / "agency"),
        "--request",
        approved_request(demo_run.dir / "dock", "张三", "钱局长", serial="BC-DEMO-0001"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert re.search(r"[\u4e00-\u9fff]", r.stdout), r.stdout  # the command speaks Chinese too
    text = _pdf_text(out / "report.pdf")
    squeezed = re.sub(r"\s+", " ", text)
    for needle in (
        "作为证据使用的录制信息",
        "执法人员 OFFICER-DEMO",
        "复制人员 张三",
        "开始时间 2026-",
        "+08:00 (Asia/Shanghai)",
        "事件（视频中的章节）",
        "缺少语音说明",
    ):
        assert needle in squeezed, text
    for english in ("Officer", "Recording", "VERIFIED", "Events"):
        assert english not in text, text


# -- resume notes, by the chain's links -----------------------------------------------


def _chain(*kinds: tuple[str, dict, int]) -> list[Record]:
    """Records in chain order: (type, body, mono_us)."""
    base_wall = 1_796_000_000_000_000
    return [
        Record(
            seq, kind, body, Stamp(mono, base_wall + mono, "synced", "gps"), SERIAL, "张三", "", 0
        )
        for seq, (kind, body, mono) in enumerate(kinds)
    ]


def test_a_note_a_few_ms_off_its_resume_is_that_resumes() -> None:
    """A live unit opens the note window at the button press and writes the
    resume a few ms later: the note is still the resume's."""
    records = _chain(
        ("record_start", {"cause": "button"}, 1_000_000),
        ("pause", {"reason": "to_be_stated"}, 5_000_000),
        ("resume", {"cause": "button"}, 9_003_000),
        ("resume_note", {"given": True, "speech_s": 3, "window_from_us": 9_000_000,
                         "window_to_us": 14_000_000}, 14_001_000),
        ("record_stop", {"cause": "button"}, 20_000_000),
    )  # fmt: skip
    (note,) = resume_notes(records)
    assert note.resume is not None and note.resume.seq == 2 and note.given
    assert set(note_of(records)) == {2}
    unit = compliance.analyse(SERIAL, records, {})
    assert [e.state for e in unit.events if e.kind == "resume"] == ["given"]
    assert unit.findings_of("note_missing") == []


def test_a_note_naming_another_record_judges_no_resume() -> None:
    records = _chain(
        ("record_start", {"cause": "button"}, 1_000_000),
        ("pause", {"reason": "to_be_stated"}, 5_000_000),
        ("resume", {"cause": "button"}, 9_000_000),
        ("resume_note", {"given": True, "speech_s": 3, "resume": 1}, 14_000_000),
        ("resume_note", {"given": True, "speech_s": 3, "resume": 7}, 14_100_000),
        ("record_stop", {"cause": "button"}, 20_000_000),
    )
    assert [n.resume for n in resume_notes(records)] == [None, None]
    assert note_of(records) == {}
    # named rightly, a note is the resume's
    right = _chain(
        ("record_start", {"cause": "button"}, 1_000_000),
        ("pause", {"reason": "to_be_stated"}, 5_000_000),
        ("resume", {"cause": "button"}, 9_000_000),
        ("resume_note", {"given": True, "speech_s": 3, "resume": 2}, 14_000_000),
    )
    assert set(note_of(right)) == {2}


# -- a supervisor named in Chinese ------------------------------------------------------


@pytest.fixture
def chinese_dock(tmp_path: Path) -> Path:
    unit = make_unit(tmp_path / "unit", serial=SERIAL)
    with unit.open(boot_body={"cause": "test"}) as store:
        store.set_officer("张三")
        store.append("record_start", {"cause": "button"})
        write_segment(store, os.urandom(4000))
        store.append("record_stop", {"cause": "button"})
    return chain_to_dock(unit, tmp_path / "dock", SERIAL, "张三")


def test_a_supervisor_named_in_chinese_signs_in_to_a_chinese_page(
    chinese_dock: Path, tmp_path: Path
) -> None:
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery staple\n")
    added = _dock("supervisor-add", "--dock-dir", str(chinese_dock), "--name", "李科长",
                  "--password-file", str(pw))  # fmt: skip
    assert added.returncode == 0, added.stderr
    with pytest.raises(PageError, match="control character"):  # refused, in any script
        add_supervisor(chinese_dock, "李\x1b科长", "correct horse battery staple")
    with in_process(chinese_dock) as base:
        c = Client(base)
        signed = c.sign_in("李科长", "correct horse battery staple")
        assert signed.status == 302 and signed.location == "/", signed.text[:2000]
        page = c.get("/")
        assert page.status == 200
        text = page.text
        assert '<html lang="zh-CN">' in text
        for needle in ("李科长", "张三", SERIAL, "Asia/Shanghai", "合规", "执法记录仪"):
            assert needle in text, text[:3000]
        visible = re.sub(r"<style>.*?</style>|<[^>]+>", " ", text, flags=re.S)
        for english in ("Sign out", "Overview", "Officer", "Recordings"):
            assert english not in visible, visible
        # the CSV: Chinese headings and labels, with the codes beside them unchanged
        unit = c.get(f"/unit/{SERIAL}").text
        day = re.search(rf"/unit/{SERIAL}/(\d{{4}}-\d\d-\d\d)", unit)
        assert day is not None, unit[:2000]
        got = c.get(f"/unit/{SERIAL}/{day.group(1)}/events.csv")
        assert got.status == 200
        rows = list(csv.DictReader(io.StringIO(got.text.lstrip("\ufeff"))))
        assert rows and {"代码", "类别"} <= set(rows[0]), list(rows[0])
        assert {r["代码"] for r in rows} >= {"start", "stop"}
        assert all(r["代码"].isascii() for r in rows)
        assert any(r["类别"] != r["代码"] and not r["类别"].isascii() for r in rows)


@pytest.mark.slow
def test_a_real_browser_shows_the_page_in_chinese_in_its_cjk_font_and_english_on_request(
    browser: Any, chinese_dock: Path
) -> None:
    add_supervisor(chinese_dock, "李科长", "correct horse battery staple")
    for locale, words, absent in (
        (None, ("执法记录仪", "Asia/Shanghai", "李科长", "张三"), ("Sign out",)),
        (Locale("en", "Asia/Shanghai"), ("Sign out", "Asia/Shanghai", "李科长", "张三"), ()),
    ):
        with in_process(chinese_dock, locale=locale) as base:
            ctx = browser.new_context()
            page = ctx.new_page()
            page.goto(base)
            page.fill("#name", "李科长")
            page.fill("#password", "correct horse battery staple")
            page.click("form.login button[type=submit]")
            page.wait_for_selector("#units")
            shown = page.inner_text("body")
            for word in words:
                assert word in shown, (locale, word, shown[:2000])
            for word in absent:
                assert word not in shown, (locale, word)
            assert "+08:00" in shown or "Asia/Shanghai" in shown
            # the browser has the page's CJK font for the names: no fallback box
            has_font = page.evaluate(
                "async () => { await document.fonts.ready;"
                " return document.fonts.check('16px \"Noto Sans CJK SC\"', '张三李科长'); }"
            )
            assert has_font is True
            family = page.evaluate("getComputedStyle(document.body).fontFamily")
            assert "Noto Sans CJK SC" in family, family
            ctx.close()


@pytest.mark.slow
def test_a_live_run_s_chapters_and_findings_say_given_where_its_chain_does(
    tmp_path: Path,
) -> None:
    """Real time, two resumes: one with a spoken reason, one without. The
    note is written seconds after its resume and its window opens at the
    press, a few ms before the resume's own stamp: the court copy's chapters
    and the page's events still say given (or MISSING) exactly where the
    chain's `resume_note` for that resume (by its `resume` link) does."""
    from dock.courtcopy.steps import VIDEO, chapters
    from dock.texts import load_texts
    from firmware.machine import Policy
    from firmware.recording import run_scenario
    from firmware.scenario import parse
    from sealing.recordings import recordings
    from sealing.store import read_chain

    unit = make_unit(tmp_path / "unit", serial=SERIAL, officer="张三")
    day = {
        "seconds": 17,
        "size": "320x180",
        "clock": "synced",
        "segment_seconds": 8,
        "prerecord_seconds": 1,
        "at": [
            {"t": 0.5, "press": "record"},
            {"t": 2, "press": "function"},  # pause
            {"t": 3, "press": "record"},  # resume, then a spoken reason
            {"t": 8.5, "press": "function"},
            {"t": 9.5, "press": "record"},  # resume, nothing said
            {"t": 15.5, "hold": "record"},
        ],
        "sound": [{"t": 3.3, "speech": "I resumed because the owner came back.", "seconds": 4}],
    }
    policy = Policy(note_min_speech_s=1.0, note_window_s=5.0, note_reprompts=0)
    run_scenario(unit.path, parse(day, tmp_path), realtime=True, policy=policy, log=lambda _: None)
    (chain,) = unit.path.rglob(layout.CHAIN)
    records = [ln.record for ln in read_chain(chain).lines]
    by_seq = {r.seq: r for r in records}
    notes = [r for r in records if r.type == "resume_note"]
    said = {n.body["resume"]: n.body["given"] for n in notes}
    assert sorted(said.values()) == [False, True], [n.body for n in notes]
    for n in notes:  # live: the window opened at the press, not at the resume's stamp
        assert n.body["window_from_us"] != by_seq[n.body["resume"]].stamp.mono_us
    (rec,) = recordings(records)
    assert rec.media(VIDEO)
    for language, given, missing in (
        ("zh-CN", "已作语音说明", "缺少语音说明"),
        ("en", "spoken reason given", "spoken reason MISSING"),
    ):
        shown = chapters(rec, load_texts(Locale(language, "Asia/Shanghai")))
        resumes = [c for c in shown if c.record is not None and by_seq[c.record].type == "resume"]
        assert sorted(c.record for c in resumes) == sorted(said)
        for c in resumes:
            expected, other = (given, missing) if said[c.record] else (missing, given)
            assert expected in c.title and other not in c.title, (language, c.title)
    analysed = compliance.analyse(SERIAL, records, {})
    states = {e.seq: e.state for e in analysed.events if e.kind == "resume"}
    assert states == {s: "given" if g else "MISSING" for s, g in said.items()}
    assert len(analysed.findings_of("note_missing")) == 1
