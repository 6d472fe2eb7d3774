"""Access requests, approvals and the register (issue 25; S0 art. 21-22 and
annex 2, S2 art. 14): outside one's role's scope a view or a playback needs
an approved request, approved by the role the rules name; without one the
same action is refused and logged; the register lists each request with its
approver and every use made of it, as a page, a PDF and a CSV. Playback of
a real recording is tested in a real browser."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from dock import audit
from dock.compliance.web.accounts import add_person
from dock.index import Index
from link.locale import Locale
from sealing.age import Identity

from .browsing import follow
from .conftest import DemoRun, agency_today
from .test_page_security import Client, in_process
from .test_roles import PASSWORD, roles_dock  # noqa: F401  (the fixture)

EN = Locale("en", "Asia/Shanghai")


@pytest.fixture
def dock(roles_dock: Path, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(roles_dock, tmp_path / "dock"))


def _signed_in(base: str, name: str) -> Client:
    c = Client(base)
    assert c.sign_in(name, PASSWORD).status == 302, name
    return c


def _file(c: Client, **fields: str) -> Any:
    day = agency_today()
    form = {
        "csrf": c.csrf("/requests"),
        "act": "view",
        "body": "internal",
        "serial": "",
        "officer": "",
        "from": (day - timedelta(days=1)).isoformat(),
        "to": (day + timedelta(days=1)).isoformat(),
        "matter": "年度统计执法检查",
        "reason": "核对现场执法过程",
        **fields,
    }
    return c.request("POST", "/requests", urlencode(form))


def _requests(dock: Path) -> list[dict[str, Any]]:
    index = Index.open(dock / "dock.sqlite", dock=None)
    try:
        return index.access_requests()
    finally:
        index.close()


def _decide(c: Client, rid: str, decision: str, note: str = "") -> Any:
    form = urlencode({"csrf": c.csrf("/requests"), "decision": decision, "note": note})
    return c.request("POST", f"/requests/{rid}/decide", form)


def _audit(dock: Path) -> list[audit.Entry]:
    entries, broken = audit.read(dock)
    assert broken is None, broken
    return entries


def test_a_view_outside_ones_scope_needs_the_department_heads_approval(dock: Path) -> None:
    """王五 (统计二科) asks to see 张三's unit (稽查一科): refused before the
    approval, by anyone but the head of 稽查一科 or the leadership; shown
    after it, and the view names the request and its approver."""
    with in_process(dock, locale=EN) as base:
        wang = _signed_in(base, "王五")
        assert wang.get("/unit/BC-ROLE-0001").status == 403
        assert _file(wang, serial="BC-ROLE-0001").status == 302
        (req,) = _requests(dock)
        assert (req["state"], req["filed_by"], req["organisation"]) == (
            "pending",
            "王五",
            "统计二科",
        )
        assert wang.get("/unit/BC-ROLE-0001").status == 403  # pending is not approved
        # the requester's colleague, an officer of the right department, and
        # the requester himself cannot decide
        for name in ("李四", "王五"):
            c = _signed_in(base, name)
            assert _decide(c, req["id"], "approved").status == 403, name
        assert req["id"] not in _signed_in(base, "李四").get("/requests").text
        head = _signed_in(base, "赵科长")
        assert req["id"] in head.get("/requests").text  # awaiting his decision
        assert _decide(head, req["id"], "approved", "同意").status == 302
        assert _decide(head, req["id"], "refused").status in (403, 409)  # decided once
        page = wang.get("/unit/BC-ROLE-0001")
        assert page.status == 200 and "BC-ROLE-0001" in page.text
        # the request reaches the unit it names, no further
        assert wang.get("/unit/BC-ROLE-0002").status == 403
    entries = _audit(dock)
    views = [e for e in entries if e.who == "王五" and e.target == "/unit/BC-ROLE-0001"]
    assert [e.result for e in views] == ["refused", "refused", "ok"], views
    assert views[-1].detail == {"request": req["id"], "approver": "赵科长"}
    decided = [(e.who, e.act, e.result) for e in entries if e.target == req["id"]]
    assert ("赵科长", "approve", "ok") in decided
    assert ("李四", "view", "refused") in [(e.who, e.act, e.result) for e in entries
                                             if req["id"] in e.target]  # fmt: skip


def test_an_outside_bodys_request_is_the_leaderships_to_approve(dock: Path) -> None:
    with in_process(dock, locale=EN) as base:
        legal = _signed_in(base, "孙法制")
        answer = _file(legal, act="court_copy", body="external", serial="BC-ROLE-0001",
                       requester="刘法官", organisation="某区人民法院")  # fmt: skip
        assert answer.status == 302
        (req,) = _requests(dock)
        assert (req["requester"], req["organisation"], req["body"]) == (
            "刘法官", "某区人民法院", "external")  # fmt: skip
        assert _decide(_signed_in(base, "赵科长"), req["id"], "approved").status == 403
        assert _decide(_signed_in(base, "钱局长"), req["id"], "approved").status == 302
    assert _requests(dock)[0]["approver"] == "钱局长"


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"serial": "BC-ROLE-0001", "matter": ""}, "the request needs the matter"),
        ({"serial": "BC-ROLE-0001", "reason": " "}, "the request needs the reason"),
        ({"serial": "BC-ROLE-0001", "act": "erase"}, "no such act"),
        ({"serial": "BC-ROLE-0001", "body": "friend"}, "no such kind of requester"),
        ({}, "must name a unit or an officer"),
        ({"serial": "BC-ROLE-0001", "from": "2026-13-01"}, "not a day of the calendar"),
        ({"serial": "BC-ROLE-0001", "from": "2026-12-05", "to": "2026-12-01"}, "must end after"),
        ({"serial": "BC-ROLE-0001", "matter": "x" * 201}, "longer than 200"),
        ({"serial": "BC-ROLE-0001", "reason": "a\u0007b"}, "not printable"),
    ],
)
def test_a_request_that_cannot_be_filed_is_refused_in_one_line(
    dock: Path, fields: dict[str, str], said: str
) -> None:
    with in_process(dock, locale=EN) as base:
        c = _signed_in(base, "王五")
        answer = _file(c, **fields)
        assert answer.status == 400, answer.text[:300]
        shown = answer.text[answer.text.find("<main>") :][:400]
        assert said in answer.text and "Traceback" not in answer.text, shown
        # a form without its CSRF field is refused too
        form = urlencode({"act": "view", "serial": "BC-ROLE-0001"})
        assert c.request("POST", "/requests", form).status == 400
    assert _requests(dock) == []


def test_the_register_lists_requests_approvers_and_uses_as_page_pdf_and_csv(dock: Path) -> None:
    with in_process(dock, locale=EN) as base:
        wang = _signed_in(base, "王五")
        assert _file(wang, serial="BC-ROLE-0002").status == 302
        (req,) = _requests(dock)
        assert _decide(_signed_in(base, "钱局长"), req["id"], "approved").status == 302
        assert wang.get("/unit/BC-ROLE-0002").status == 200
        day = agency_today().isoformat()
        assert wang.get(f"/unit/BC-ROLE-0002/{day}").status == 200
        # the register is the auditors' and the leadership's
        for name in ("王五", "赵科长", "吴管理"):
            assert _signed_in(base, name).get("/register").status == 403, name
        auditor = _signed_in(base, "周审计")
        page = auditor.get("/register")
        assert page.status == 200
        row = re.search(rf'<tr id="reg-{req["id"]}">(.*?)</tr>', page.text, re.S)
        assert row, page.text
        for needle in ("王五", "统计二科", "年度统计执法检查", "核对现场执法过程", "钱局长",
                       "/unit/BC-ROLE-0002", f"/unit/BC-ROLE-0002/{day}"):  # fmt: skip
            assert needle in row.group(1), (needle, row.group(1))
        table = list(csv.reader(io.StringIO(auditor.get("/register.csv").body.decode("utf-8-sig"))))
        assert table[0][:6] == ["No.", "Requester", "Organisation", "Matter", "Reason", "Act"]
        assert table[1][1:6] == ["王五", "统计二科", "年度统计执法检查", "核对现场执法过程", "view"]
        assert table[1][12] == "钱局长" and table[1][14].count("view") == 2, table[1]
        pdf = auditor.get("/register.pdf")
        assert pdf.status == 200 and pdf.body.startswith(b"%PDF")
    text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf.body,
                          capture_output=True, check=True, timeout=60).stdout.decode()  # fmt: skip
    for needle in ("王五", "钱局长", "年度统", "BC-"):  # a long cell wraps in its column
        assert needle in text, text


# -- playback of a real recording -------------------------------------------------


def _mine(dock: Path, filer: str) -> list[dict[str, Any]]:
    """The requests `filer` filed: the demo's dock is shared with other tests
    (court copies file theirs there)."""
    return [r for r in _requests(dock) if r["filed_by"] == filer]


def _demo_dock(demo: DemoRun, work: Path) -> tuple[Path, Identity, tuple[int, int]]:
    assert demo.returncode == 0, demo.stdout + demo.stderr
    dock = Path(shutil.copytree(demo.dir / "dock", work / "dock"))
    people = [("OFFICER-DEMO", "officer", "稽查一科"), ("王五", "officer", "统计二科"),
              ("赵科长", "head", "稽查一科")]  # fmt: skip
    for name, role, dept in people:
        add_person(dock, name, role, dept, PASSWORD)
    index = Index.open(dock / "dock.sqlite", dock=None)
    with index.engine.connect() as conn:
        span = conn.exec_driver_sql(
            "SELECT min(start_wall_us), max(end_wall_us) FROM segments"
        ).one()
    index.close()
    identity = Identity.parse((demo.dir / "agency" / "evidence.key").read_text())
    return dock, identity, (int(span[0]), int(span[1]))


def test_a_recording_plays_in_a_real_browser_on_an_approved_request(
    browser: Any, demo_run: DemoRun, tmp_path: Path
) -> None:
    dock, identity, (start_us, end_us) = _demo_dock(demo_run, tmp_path)
    first = time.strftime("%Y-%m-%d", time.gmtime(start_us / 1e6 + 8 * 3600))
    last = time.strftime("%Y-%m-%d", time.gmtime(end_us / 1e6 + 8 * 3600))
    with in_process(dock, locale=EN, identity=identity) as base:
        officer = _signed_in(base, "OFFICER-DEMO")
        unit = officer.get("/unit/BC-DEMO-0001").text
        play = re.search(r'href="(/unit/BC-DEMO-0001/recording/(\d+))"', unit)
        assert play, unit
        path = play.group(1)
        # the officer plays their own directly; a live stream, not sought in
        # ranges: a Range is answered 200 from the start (tests/test_playback.py)
        assert officer.get(path).status == 200
        from .test_playback import _first_frame, _live

        with _live(officer, path + "/video.mp4") as part:
            assert part.status == 200 and part.getheader("Content-Type") == "video/mp4"
            frame, comment = _first_frame(part.read(400_000))
        assert frame.shape[1] > 0
        assert comment.startswith("OFFICER-DEMO ")  # whose playback it is
        # 王五 (another department) is refused, files a request, the head approves
        wang = _signed_in(base, "王五")
        assert wang.get(path).status == 403
        assert wang.get(path + "/video.mp4").status == 403
        assert (
            _file(wang, act="play", serial="BC-DEMO-0001", **{"from": first, "to": last}).status
            == 302
        )
        (req,) = _mine(dock, "王五")
        assert _decide(_signed_in(base, "赵科长"), req["id"], "approved").status == 302
        # in a real browser: the page plays the video
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(base)
        page.fill("#name", "王五")
        page.fill("#password", PASSWORD)
        follow(page, "form.login button[type=submit]")
        answer = page.goto(base.rstrip("/") + path)
        assert answer is not None and answer.status == 200
        # nothing streams before play is pressed (preload="none"): each stream is an encoder
        page.evaluate("() => { const v = document.querySelector('#player'); v.muted = true;"
                      " return v.play(); }")  # fmt: skip
        page.wait_for_function(
            "() => { const v = document.querySelector('#player');"
            " return v && v.readyState >= 2 && v.videoWidth > 0; }",
            timeout=60_000,
        )
        width = page.evaluate("document.querySelector('#player').videoWidth")
        assert width > 0
        assert req["id"] in page.inner_text("main")
        ctx.close()
    plays = [e for e in _audit(dock) if e.act == "play" and e.result == "ok"]
    assert {e.who for e in plays} == {"OFFICER-DEMO", "王五"}
    assert any(e.who == "王五" and e.detail.get("request") == req["id"] for e in plays)
    refused = [e for e in _audit(dock) if e.act == "play" and e.result == "refused"]
    assert any(e.who == "王五" for e in refused)


def test_a_download_needs_its_own_approved_request_even_of_ones_own(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    """A recording leaving the dock as a file is a copy (S0 art. 22, 30):
    the officer's own included, only on an approved download request."""
    dock, identity, (start_us, end_us) = _demo_dock(demo_run, tmp_path)
    first = time.strftime("%Y-%m-%d", time.gmtime(start_us / 1e6 + 8 * 3600))
    last = time.strftime("%Y-%m-%d", time.gmtime(end_us / 1e6 + 8 * 3600))
    with in_process(dock, locale=EN, identity=identity) as base:
        officer = _signed_in(base, "OFFICER-DEMO")
        path = re.search(r'href="(/unit/BC-DEMO-0001/recording/\d+)"',
                         officer.get("/unit/BC-DEMO-0001").text).group(1)  # fmt: skip
        assert officer.get(path + "/download.mp4").status == 403
        answer = _file(
            officer, act="download", serial="BC-DEMO-0001", **{"from": first, "to": last}
        )
        assert answer.status == 302
        (req,) = _mine(dock, "OFFICER-DEMO")
        assert officer.get(path + "/download.mp4").status == 403  # pending
        assert _decide(_signed_in(base, "赵科长"), req["id"], "approved").status == 302
        got = officer.get(path + "/download.mp4")
        assert got.status == 200 and got.body[4:8] == b"ftyp"
        assert "attachment" in got.headers["content-disposition"]
        # streamed, watermarked with who downloaded it, the whole recording
        mp4 = tmp_path / "downloaded.mp4"
        mp4.write_bytes(got.body)
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration:format_tags=comment",
             "-of", "default=nw=1", str(mp4)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert "TAG:comment=OFFICER-DEMO " in probe.stdout, probe
        seconds = float(re.search(r"duration=([\d.]+)", probe.stdout).group(1))
        assert abs(seconds - (end_us - start_us) / 1e6) < 5, (seconds, start_us, end_us)
    downloads = [(e.who, e.result, e.detail.get("request")) for e in _audit(dock)
                 if e.act == "download"]  # fmt: skip
    assert downloads == [("OFFICER-DEMO", "refused", None), ("OFFICER-DEMO", "refused", None),
                         ("OFFICER-DEMO", "ok", req["id"])], downloads  # fmt: skip
