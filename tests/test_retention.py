"""How long recordings are kept (issue 26; S0 art. 24-25, 27): the class
from the officer's mark, raised or lowered at the page by the roles the
rules name, holds that suspend expiry, and `bodycam-dock retention` listing
what is due for disposal on a day."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from dock import audit
from dock.compliance.web.accounts import add_person
from dock.retention import Policy, PolicyError, add_months, parse_policy, standing
from link.locale import Locale

from .conftest import BODYCAM_DOCK, agency_today, chain_to_dock, make_unit, write_segment
from .english import EN_ARGS
from .test_page_security import Client, in_process

SERIAL = "BC-KEEP-0001"
OFFICER = "张三"
PASSWORD = "correct horse battery staple"
PEOPLE = [
    ("张三", "officer", "稽查一科"),
    ("赵科长", "head", "稽查一科"),
    ("孙科长", "head", "统计二科"),
    ("钱局长", "leader", ""),
    ("孙法制", "legal", "法制科"),
]


def test_months_are_calendar_months() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert add_months(date(2026, 8, 15), 6) == date(2027, 2, 15)
    assert add_months(date(2026, 12, 2), 24) == date(2028, 12, 2)


def test_a_standing_follows_the_mark_the_changes_and_the_holds() -> None:
    day, p = date(2026, 12, 2), Policy()
    assert standing([], day, [], p).cls == "supervision"
    assert standing(["evidence"], day, [], p).expires == date(2028, 12, 2)
    rows = [
        {"change": "hold", "value": "dispute"},
        {"change": "hold", "value": "case"},
        {"change": "release", "value": "dispute"},
    ]
    s = standing([], day, rows, p)
    assert s.holds == ("case",) and not s.due(date(2099, 1, 1))
    s = standing([], day, [{"change": "class", "value": "long_term"}], p)
    assert s.expires is None and not s.due(date(2099, 1, 1))
    s = standing([], day, [], p)
    assert not s.due(date(2027, 6, 2)) and s.due(date(2027, 6, 3))


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ({"supervision_months": 0}, "supervision_months = 0"),
        ({"evidence_months": "24"}, "evidence_months = '24'"),
        ({"approver": "janitor"}, "approver = 'janitor'"),
        ({"keep_forever": True}, "unknown key 'keep_forever'"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_key(table: dict, said: str) -> None:
    with pytest.raises(PolicyError, match=said):
        parse_policy(table, "dock.toml")
    assert parse_policy({"supervision_months": 3}, "x").supervision_months == 3


@pytest.fixture(scope="module")
def kept_dock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two recordings made today: the first marked as evidence, the second not."""
    work = tmp_path_factory.mktemp("keep")
    unit = make_unit(work / "unit", serial=SERIAL, officer=OFFICER)
    with unit.open(boot_body={"cause": "test"}) as store:
        for marked in (True, False):
            store.append("record_start", {"cause": "button"})
            write_segment(store, os.urandom(3000))
            if marked:
                store.append("mark", {"flag": "evidence", "retention": "evidence"})
            store.append("record_stop", {"cause": "button"})
    dock = chain_to_dock(unit, work / "dock", SERIAL, OFFICER)
    for name, role, department in PEOPLE:
        add_person(dock, name, role, department, PASSWORD)
    return dock


@pytest.fixture
def dock(kept_dock: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(kept_dock, tmp_path / "dock"))


def _due(dock: Path, as_of: date) -> list[str]:
    r = subprocess.run(
        [*BODYCAM_DOCK, "retention", "--dock-dir", str(dock), "--as-of", as_of.isoformat(),
         *EN_ARGS], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"due for disposal on {as_of.isoformat()}" in r.stderr
    return r.stdout.splitlines()


def _recordings(base: str) -> list[int]:
    import re

    c = Client(base)
    assert c.sign_in("钱局长", PASSWORD).status == 302
    page = c.get(f"/unit/{SERIAL}").text
    return [int(x) for x in re.findall(rf"/unit/{SERIAL}/recording/(\d+)\"", page)]


def _change(base: str, who: str, seq: int, change: str, value: str, reason: str = "复议") -> int:
    c = Client(base)
    assert c.sign_in(who, PASSWORD).status == 302
    path = f"/unit/{SERIAL}/recording/{seq}"
    form = {"csrf": c.csrf(path), "change": change, "value": value, "reason": reason}
    return c.request("POST", path + "/retention", urlencode(form)).status


def test_what_is_due_follows_class_holds_and_who_changed_them(dock: Path) -> None:
    today = agency_today()
    seven_months, three_years = add_months(today, 7), add_months(today, 36)
    assert _due(dock, today) == []
    (unmarked,) = _due(dock, seven_months)  # supervision: 6 months
    assert "supervision" in unmarked and SERIAL in unmarked
    assert len(_due(dock, three_years)) == 2  # evidence too: 24 months
    with in_process(dock, locale=Locale("en", "Asia/Shanghai")) as base:
        marked_seq, unmarked_seq = _recordings(base)
        assert f"recording {unmarked_seq}:" in unmarked
        # a head of another department may not; the officer's head may hold it
        assert _change(base, "孙科长", marked_seq, "hold", "litigation") == 403
        assert _change(base, "张三", marked_seq, "hold", "litigation") == 403
        assert _change(base, "赵科长", marked_seq, "hold", "litigation") == 302
        held = _due(dock, three_years)
        assert len(held) == 1 and f"recording {unmarked_seq}:" in held[0]
        # releasing a hold is the approver's (the leadership), not the head's
        assert _change(base, "赵科长", marked_seq, "release", "litigation") == 403
        assert _change(base, "钱局长", marked_seq, "release", "litigation") == 302
        assert len(_due(dock, three_years)) == 2
        # legal raises the unmarked one to evidence; lowering it back is the leadership's
        assert _change(base, "孙法制", unmarked_seq, "class", "evidence") == 302
        assert _due(dock, seven_months) == []
        assert _change(base, "孙法制", unmarked_seq, "class", "supervision") == 403
        assert _change(base, "钱局长", unmarked_seq, "class", "supervision") == 302
        assert len(_due(dock, seven_months)) == 1
        # no reason, no change; nonsense refused in one line
        assert _change(base, "钱局长", unmarked_seq, "class", "long_term", reason=" ") == 400
        assert _change(base, "钱局长", unmarked_seq, "class", "forever") == 400
        assert _change(base, "钱局长", unmarked_seq, "release", "case") == 409
        # the page says how long each is kept
        c = Client(base)
        assert c.sign_in("钱局长", PASSWORD).status == 302
        text = c.get(f"/unit/{SERIAL}/recording/{marked_seq}").text
        assert "supplementary evidence" in text and add_months(today, 24).isoformat() in text
    lines = [(e.who, e.act, e.result) for e in audit.read(dock)[0] if e.act.startswith("retention")]
    assert ("赵科长", "retention_hold", "ok") in lines
    assert ("赵科长", "retention_release", "refused") in lines
    assert ("钱局长", "retention_class", "ok") in lines


def test_retention_refuses_bad_input_in_one_line(dock: Path, tmp_path: Path) -> None:
    args = [*BODYCAM_DOCK, "retention", "--dock-dir", str(dock), "--as-of", "2026-02-30"]
    r = subprocess.run([*args, *EN_ARGS], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is not a day" in r.stderr and "Traceback" not in r.stderr
    (dock / "dock.toml").write_text("[retention]\nsupervision_months = -1\n")
    r = subprocess.run([*BODYCAM_DOCK, "retention", "--dock-dir", str(dock), *EN_ARGS],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "supervision_months = -1" in r.stderr, r.stderr
    (dock / "dock.toml").write_text("[retention]\nsupervision_months = 3\n")
    due = _due(dock, agency_today() + timedelta(days=130))
    assert len(due) == 1  # the agency's own period: 3 months
    r = subprocess.run([*BODYCAM_DOCK, "retention", "--dock-dir", str(tmp_path / "none"),
                        *EN_ARGS], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "not a dock folder" in r.stderr
