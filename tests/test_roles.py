"""People, roles and the audit log at the dock (issue 25, S0 art. 21-22):
each role sees exactly what docs/ACCESS.md's table allows, in a real
browser, with URLs typed by hand; each refusal is a line of the audit log;
`bodycam-dock audit-verify` finds one edited line."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from dock import access, audit
from dock.compliance.web.accounts import add_person
from dock.compliance.web.errors import PageError
from link.locale import Locale

from .browsing import follow
from .conftest import BODYCAM_DOCK, chain_to_dock, make_unit, write_segment
from .english import EN_ARGS
from .test_page_security import Client, in_process

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
# unit -> its officer; 张三 and 李四 are of the first inspection section, 王五 of statistics
UNITS = {"BC-ROLE-0001": "张三", "BC-ROLE-0002": "李四", "BC-ROLE-0003": "王五"}
PEOPLE = [  # name, role, department
    ("张三", "officer", "稽查一科"),
    ("李四", "officer", "稽查一科"),
    ("王五", "officer", "统计二科"),
    ("赵科长", "head", "稽查一科"),
    ("钱局长", "leader", ""),
    ("孙法制", "legal", "法制科"),
    ("周审计", "auditor", "审计科"),
    ("吴管理", "admin", "信息科"),
]
# who sees which units (docs/ACCESS.md)
SEES = {
    "张三": {"BC-ROLE-0001"},
    "李四": {"BC-ROLE-0002"},
    "王五": {"BC-ROLE-0003"},
    "赵科长": {"BC-ROLE-0001", "BC-ROLE-0002"},
    "钱局长": set(UNITS),
    "孙法制": set(UNITS),
    "周审计": set(),
    "吴管理": set(),
}
REGISTERS = {"钱局长", "周审计"}


@pytest.fixture(scope="module")
def roles_dock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("roles")
    dock = work / "dock"
    for serial, officer in UNITS.items():
        unit = make_unit(work / serial, serial=serial, officer=officer)
        with unit.open(boot_body={"cause": "test"}) as store:
            store.append("record_start", {"cause": "button"})
            write_segment(store, os.urandom(4000))
            store.append("record_stop", {"cause": "button"})
        chain_to_dock(unit, dock, serial, officer)
    for name, role, department in PEOPLE:
        assert add_person(dock, name, role, department, PASSWORD) is True
    return dock


@pytest.fixture
def dock(roles_dock: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(roles_dock, tmp_path / "dock"))


def _refusals(dock: Path) -> list[tuple[str, str]]:
    entries, broken = audit.read(dock)
    assert broken is None, broken
    return [(e.who, e.target) for e in entries if e.result == "refused"]


def test_each_role_sees_exactly_what_the_table_allows(dock: Path) -> None:
    """Every person against every unit page, day CSV and officer page, typed
    by hand: 200 exactly where the table allows, 403 (recorded) elsewhere."""
    with in_process(dock, locale=Locale("en", "Asia/Shanghai")) as base:
        for name, _role, _ in PEOPLE:
            c = Client(base)
            assert c.sign_in(name, PASSWORD).status == 302, name
            overview = c.get("/").text
            for serial in UNITS:
                listed = f"/unit/{serial}" in overview
                allowed = serial in SEES[name]
                assert listed == allowed, (name, serial)
                got = c.get(f"/unit/{serial}")
                assert got.status == (200 if allowed else 403), (name, serial, got.status)
                if not allowed:
                    assert "Traceback" not in got.text and "role does not allow" in got.text
            for serial, officer in UNITS.items():
                allowed = serial in SEES[name]
                assert c.get(f"/officer/{quote(officer)}").status in (
                    (200,) if allowed else (403,)
                ), (
                    name,
                    officer,
                )
            assert c.get("/audit").status == (200 if name in REGISTERS else 403), name
            assert ("nav-audit" in overview) == (name in REGISTERS)
            assert f"Signed in as {name} (" in overview
    refused = _refusals(dock)
    # every 403 above is one line, named with who asked for what
    assert ("张三", "/unit/BC-ROLE-0002") in refused
    assert ("赵科长", "/unit/BC-ROLE-0003") in refused
    assert ("周审计", "/unit/BC-ROLE-0001") in refused
    assert ("吴管理", "/audit") in refused
    assert not any(who in ("钱局长", "孙法制") and "/unit/" in what for who, what in refused)


def test_a_guessed_day_and_download_are_refused_and_logged(dock: Path) -> None:
    with in_process(dock, locale=Locale("en", "Asia/Shanghai")) as base:
        legal = Client(base)
        assert legal.sign_in("孙法制", PASSWORD).status == 302
        page = legal.get("/unit/BC-ROLE-0003").text
        day = page.split("/unit/BC-ROLE-0003/")[1][:10]
        for path in (f"/unit/BC-ROLE-0003/{day}", f"/unit/BC-ROLE-0003/{day}/events.csv"):
            assert legal.get(path).status == 200, path
        officer = Client(base)
        assert officer.sign_in("张三", PASSWORD).status == 302
        for path in (
            f"/unit/BC-ROLE-0003/{day}",
            f"/unit/BC-ROLE-0003/{day}/events.csv",
            f"/unit/BC-ROLE-0003/{day}/report.pdf",
            "/unit/BC-ROLE-9999",  # what does not exist is not told either
        ):
            assert officer.get(path).status == 403, path
    entries, broken = audit.read(dock)
    assert broken is None
    acts = {(e.who, e.act, e.target, e.result) for e in entries}
    assert ("孙法制", "download", f"/unit/BC-ROLE-0003/{day}/events.csv", "ok") in acts
    assert ("张三", "download", f"/unit/BC-ROLE-0003/{day}/events.csv", "refused") in acts
    assert ("张三", "view", f"/unit/BC-ROLE-0003/{day}", "refused") in acts


@pytest.mark.slow
def test_in_a_real_browser_each_role_sees_exactly_its_own(browser: Any, dock: Path) -> None:
    """One signed-in user per role in chromium: the units the table allows
    are listed, the others answer 403 when typed by hand (and are logged);
    the registers (audit log, access register) only where the table says."""
    with in_process(dock, locale=Locale("zh-CN", "Asia/Shanghai")) as base:
        for name, _role, _ in PEOPLE:
            shown, hidden = SEES[name], set(UNITS) - SEES[name]
            ctx = browser.new_context()
            page = ctx.new_page()
            page.goto(base)
            page.fill("#name", name)
            page.fill("#password", PASSWORD)
            follow(page, "form.login button[type=submit]")
            text = page.inner_text("body")
            for serial in shown:
                assert serial in text, (name, serial)
            for serial in hidden:
                assert serial not in text, (name, serial)
                answer = page.goto(f"{base}unit/{serial}")  # typed by hand
                assert answer is not None and answer.status == 403, (name, serial)
                assert "您的角色" in page.inner_text("body")
            for path, title in (("audit", "审计日志"), ("register", "调阅、复制音像资料登记表")):
                answer = page.goto(f"{base}{path}")
                assert answer is not None
                if name in REGISTERS:
                    assert answer.status == 200 and title in page.inner_text("h1"), (name, path)
                else:
                    assert answer.status == 403, (name, path)
            ctx.close()
    refused = _refusals(dock)
    for name in (n for n, _, _ in PEOPLE if n not in REGISTERS):
        assert (name, "/register") in refused, name


def _dock_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BODYCAM_DOCK, *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_audit_verify_finds_an_edited_line(dock: Path) -> None:
    ok = _dock_cli("audit-verify", "--dock-dir", str(dock), *EN_ARGS)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stdout + ok.stderr
    fingerprint = audit.key_fingerprint(dock)
    assert fingerprint in ok.stdout
    log = dock / audit.AUDIT_LOG
    lines = log.read_bytes().split(b"\n")
    # an administrator turns the account added for 王五 into one for 王六
    at = next(i for i, line in enumerate(lines) if "王五".encode() in line)
    lines[at] = lines[at].replace("王五".encode(), "王六".encode())
    log.write_bytes(b"\n".join(lines))
    broken = _dock_cli("audit-verify", "--dock-dir", str(dock), *EN_ARGS)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"line {at + 1}" in broken.stdout and "signature" in broken.stdout, broken.stdout
    # the line dropped instead: the next one no longer follows
    del lines[at]
    log.write_bytes(b"\n".join(lines))
    dropped = _dock_cli("audit-verify", "--dock-dir", str(dock), *EN_ARGS)
    assert dropped.returncode == 1 and f"line {at + 1}" in dropped.stdout, dropped.stdout
    # in Chinese by default
    zh = _dock_cli("audit-verify", "--dock-dir", str(dock))
    assert zh.returncode == 1 and "审计日志" in zh.stdout, zh.stdout


def test_user_add_refuses_what_it_cannot_take(dock: Path, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    for args, says in (
        (("--role", "chief"), "invalid choice"),
        (("--role", "head"), "needs --department"),
        (("--role", "officer", "--department", "一科\x07"), "control character"),
    ):
        r = _dock_cli("user-add", "--dock-dir", str(dock), "--name", "新人",
                      "--password-file", str(pw), *args, *EN_ARGS)  # fmt: skip
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _dock_cli("user-add", "--dock-dir", str(dock), "--name", "新人", "--role", "officer",
                  "--department", "稽查一科", "--password-file", str(pw), *EN_ARGS)  # fmt: skip
    assert r.returncode == 0 and "新人 added as officer" in r.stdout, r.stdout + r.stderr
    entries, _ = audit.read(dock)
    assert entries[-1].act == "account_added" and entries[-1].target == "新人"
    assert entries[-1].detail == {"role": "officer", "department": "稽查一科"}
    with pytest.raises(PageError):
        add_person(dock, "x", "officer", "", "short")


@pytest.mark.parametrize(
    ("role", "owner", "department", "allowed"),
    [
        ("officer", "张三", "稽查一科", True),
        ("officer", "李四", "稽查一科", False),
        ("head", "李四", "稽查一科", True),
        ("head", "王五", "统计二科", False),
        ("head", "无名", None, False),
        ("leader", "王五", None, True),
        ("legal", "王五", "统计二科", True),
        ("auditor", "张三", "稽查一科", False),
        ("admin", "张三", "稽查一科", False),
    ],
)
def test_the_table(role: str, owner: str, department: str | None, allowed: bool) -> None:
    me = access.Person("张三" if role == "officer" else "someone", role, "稽查一科")
    assert access.may(me, access.Act.SEE_RECORDINGS, owner, department) is allowed


def test_the_page_shows_the_units_own_checks_logins_exports_and_releases(tmp_path: Path) -> None:
    """What a supervisor must see of the unit itself (issue 25): a failed
    pre-use check, logins at the dock with their failures, exports and the
    storage freed, on the unit's day, flagged where something went wrong."""
    serial = "BC-ROLE-0009"
    unit = make_unit(tmp_path / "unit", serial=serial, officer="张三")
    with unit.open(boot_body={"cause": "test"}) as store:
        store.append("selftest", {"devices": {}, "checks": {"camera": "no frame in 2 s",
                                                            "storage": "PASS"}})  # fmt: skip
        store.append("record_start", {"cause": "button"})
        write_segment(store, os.urandom(4000))
        store.append("record_stop", {"cause": "button"})
        for result, failures in (("bad_password", 1), ("bad_password", 2), ("ok", 0)):
            store.append("auth", {"dock": "dock1", "result": result, "failures": failures,
                                  "fingerprint_ok": True})  # fmt: skip
        store.append("export", {"file": "000001.ts.age", "dock": "dock1", "from": 0,
                                "bytes": 10, "size": 10})  # fmt: skip
        store.append("release", {"receipt": "r-1", "files": ["000001.ts.age"]})
    dock = chain_to_dock(unit, tmp_path / "dock", serial, "张三")
    add_person(dock, "孙法制", "legal", "法制科", PASSWORD)
    for locale, needles in (
        (Locale("en", "Asia/Shanghai"), ("pre-use check FAILED: camera", "wrong password",
                                          "(2 failures in a row)", "sent to dock dock1",
                                          "storage released: 1 files",
                                          "no fingerprint reader")),
        (Locale("zh-CN", "Asia/Shanghai"), ("使用前自检未通过：camera", "密码错误")),
    ):  # fmt: skip
        with in_process(dock, locale=locale) as base:
            c = Client(base)
            assert c.sign_in("孙法制", PASSWORD).status == 302
            unit_page = c.get(f"/unit/{serial}").text
            day = unit_page.split(f"/unit/{serial}/")[1][:10]
            text = c.get(f"/unit/{serial}/{day}").text
            for needle in needles:
                assert needle in text, (locale, needle)


def test_a_unit_handed_between_officers_shows_each_only_what_they_may_see(
    tmp_path: Path,
) -> None:
    """BC-ROLE-0009 went from 张三 (稽查一科) to 王五 (统计二科) by check-out:
    the head of 稽查一科 sees 张三's recording and not 王五's, 王五 his own
    and not 张三's, the leadership both, on the unit page, the overview and
    the day's CSV."""
    serial = "BC-ROLE-0009"
    unit = make_unit(tmp_path / serial, serial=serial, officer="张三")
    with unit.open(boot_body={"cause": "test"}) as store:
        for officer in ("张三", "王五"):
            if officer != store.officer:
                store.set_officer(officer, {"approver": "钱局长"})
            store.append("record_start", {"cause": "button"})
            write_segment(store, os.urandom(2000))
            store.append("record_stop", {"cause": "button"})
    dock = chain_to_dock(unit, tmp_path / "dock", serial, "王五")
    for name, role, department in PEOPLE:
        add_person(dock, name, role, department, PASSWORD)
    sees = {"赵科长": {"张三"}, "王五": {"王五"}, "钱局长": {"张三", "王五"}, "张三": {"张三"}}
    with in_process(dock, locale=Locale("en", "Asia/Shanghai")) as base:
        for name, officers in sees.items():
            c = Client(base)
            assert c.sign_in(name, PASSWORD).status == 302
            page = c.get(f"/unit/{serial}")
            assert page.status == 200, name
            rows = re.findall(r'<table class="recordings">(.*?)</table>', page.text, re.S)
            shown = {o for o in ("张三", "王五") if rows and f"<td>{o}</td>" in rows[0]}
            assert shown == officers, (name, shown)
            overview = c.get("/").text
            for o in {"张三", "王五"} - officers:
                assert f"/officer/{quote(o)}" not in overview, (name, o)
            day = re.search(rf"/unit/{serial}/(\d{{4}}-\d{{2}}-\d{{2}})", page.text)
            assert day, page.text
            table = c.get(f"/unit/{serial}/{day.group(1)}/events.csv").body.decode("utf-8-sig")
            officers_in_csv = {r[2] for r in csv.reader(io.StringIO(table))} - {"Officer"}
            assert officers_in_csv <= officers and officers_in_csv, (name, officers_in_csv)
