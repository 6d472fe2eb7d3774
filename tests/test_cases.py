"""Cases and the files by date (issue 26; S2 art. 10, 12): a case opened at
the page, two recordings of two units filed in it (each then held), both
browsable by case and by year / month / day; who may file is the table's;
bad input refused in one line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from dock import audit
from dock.cases import CaseRefused, case_name, case_number
from dock.compliance.web.accounts import add_person
from link.locale import Locale

from .conftest import BODYCAM_DOCK, DemoRun, agency_today
from .english import EN_ARGS
from .test_court_copy import _export
from .test_page_security import Client, in_process
from .test_roles import PASSWORD, roles_dock  # noqa: F401  (the fixture)

EN = Locale("en", "Asia/Shanghai")
NUMBER = "衡统稽〔2026〕12号"
NAME = "某商贸有限公司统计违法案"


@pytest.fixture
def dock(roles_dock: Path, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(roles_dock, tmp_path / "dock"))


def _signed_in(base: str, name: str) -> Client:
    c = Client(base)
    assert c.sign_in(name, PASSWORD).status == 302, name
    return c


def _seq(c: Client, serial: str) -> int:
    found = re.search(rf"/unit/{serial}/recording/(\d+)\"", c.get(f"/unit/{serial}").text)
    assert found
    return int(found.group(1))


def _open(c: Client, number: str = NUMBER, name: str = NAME) -> int:
    form = {"csrf": c.csrf("/cases"), "number": number, "name": name}
    return c.request("POST", "/cases", urlencode(form)).status


def _file(c: Client, serial: str, seq: int | str, number: str = NUMBER) -> int:
    path = f"/case/{quote(number, safe='')}"
    form = {"csrf": c.csrf("/cases"), "serial": serial, "recording": str(seq)}
    return c.request("POST", path + "/file", urlencode(form)).status


def test_case_numbers_and_names_are_checked() -> None:
    assert case_number("  衡统稽〔2026〕 12号 ") == "衡统稽〔2026〕 12号"
    for bad in ("", " ", "a/b", "x" * 65, "a\x00b"):
        with pytest.raises(CaseRefused):
            case_number(bad)
    with pytest.raises(CaseRefused):
        case_name("y" * 201)


def test_a_case_with_two_units_recordings_is_filed_held_and_browsable(dock: Path) -> None:
    with in_process(dock, locale=EN) as base:
        head = _signed_in(base, "赵科长")  # head of 稽查一科: units 0001 and 0002
        seq1, seq2 = _seq(head, "BC-ROLE-0001"), _seq(head, "BC-ROLE-0002")
        assert _open(head) == 302
        assert _open(head) == 409  # a number is one case
        # the officer may not open or file; nor the head in another's department
        officer = _signed_in(base, "张三")
        assert _open(officer, "X-1") == 403
        assert _file(officer, "BC-ROLE-0001", seq1) == 403
        assert _file(head, "BC-ROLE-0003", _seq(_signed_in(base, "钱局长"), "BC-ROLE-0003")) == 403
        assert _file(head, "BC-ROLE-0001", seq1) == 302
        # from the recording's own page: the cases it may be filed in, chosen there
        play = head.get(f"/unit/BC-ROLE-0002/recording/{seq2}").text
        assert "Not filed in a case." in play and f'<option value="{NUMBER}">' in play
        form = {"csrf": head.csrf("/cases"), "serial": "BC-ROLE-0002", "recording": str(seq2),
                "number": NUMBER}  # fmt: skip
        assert head.request("POST", "/cases/file", urlencode(form)).status == 302
        play = head.get(f"/unit/BC-ROLE-0002/recording/{seq2}").text
        assert NAME in play and f'<option value="{NUMBER}">' not in play
        assert _file(head, "BC-ROLE-0002", seq2) == 409  # once
        assert _file(head, "BC-ROLE-0002", "x") == 400
        # what does not exist is told only to who sees everything
        assert _file(head, "BC-ROLE-0002", 99999) == 403
        assert _file(_signed_in(base, "钱局长"), "BC-ROLE-0002", 99999) == 404
        # by case: both recordings, each now held for the case
        page = head.get(f"/case/{quote(NUMBER, safe='')}").text
        assert NAME in page and page.count('class="play"') == 2
        assert "BC-ROLE-0001" in page and "BC-ROLE-0002" in page
        assert page.count("held") >= 2 and "case" in page
        assert NUMBER in head.get("/cases").text
        # the officer sees the case, with only their recording in it
        mine = officer.get(f"/case/{quote(NUMBER, safe='')}").text
        assert "BC-ROLE-0001" in mine and "BC-ROLE-0002" not in mine
        assert "1 more recording of this case is outside what you may see" in mine
        # by year, month, day (the agency's day)
        today = agency_today()
        years = head.get("/files").text
        assert f'href="/files/{today.year}"' in years
        months = head.get(f"/files/{today.year}").text
        assert f'href="/files/{today.year}/{today.month}"' in months
        days = head.get(f"/files/{today.year}/{today.month}").text
        assert f'href="/files/{today.year}/{today.month}/{today.day}"' in days
        listed = head.get(f"/files/{today.year}/{today.month}/{today.day}").text
        assert "BC-ROLE-0001" in listed and "BC-ROLE-0002" in listed
        assert "BC-ROLE-0003" not in listed  # another department's
        assert NUMBER in listed  # the case column
        assert head.get(f"/files/{today.year}/13").status == 404
        assert head.get(f"/files/{today.year}/2/30").status == 404
        bad = _open(head, "a/b")
        assert bad == 400
    # filing placed the case hold: nothing of the case is due, even in ten years
    r = subprocess.run(
        [*BODYCAM_DOCK, "retention", "--dock-dir", str(dock), "--as-of", "2036-12-31", *EN_ARGS],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    due = r.stdout
    assert "BC-ROLE-0003" in due and "BC-ROLE-0001" not in due and "BC-ROLE-0002" not in due
    acts = [(e.who, e.act, e.result) for e in audit.read(dock)[0]]
    assert ("赵科长", "case_open", "ok") in acts
    assert ("赵科长", "case_file", "refused") in acts
    assert sum(1 for a in acts if a == ("赵科长", "case_file", "ok")) == 2


def test_the_court_copy_names_the_case_its_recording_is_filed_in(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    assert demo_run.returncode == 0, demo_run.stderr
    dock = Path(shutil.copytree(demo_run.dir / "dock", tmp_path / "dock"))
    add_person(dock, "钱局长", "leader", "", PASSWORD)
    with in_process(dock, locale=EN) as base:
        leader = _signed_in(base, "钱局长")
        assert _open(leader) == 302
        assert _file(leader, "BC-DEMO-0001", 4) == 302
    r = _export(demo_run, tmp_path / "copy", dock=dock)
    assert r.returncode == 0, r.stderr
    facts = json.loads((tmp_path / "copy" / "manifest.json").read_text())
    assert facts["recording"]["cases"] == [{"number": NUMBER, "name": NAME}]
    text = subprocess.run(
        ["pdftotext", "-layout", str(tmp_path / "copy" / "report.pdf"), "-"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert NUMBER in text and NAME in text, text
