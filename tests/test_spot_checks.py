"""Spot checks (issue 26; S0 art. 28-29): a sample drawn with a seed and
drawn again with it is the same; a sampled recording is judged only after
the judge played it; a judgement is written once; the check ledger lists
it as a page, a CSV and a PDF; who may check is the table's."""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from dock import audit
from dock.compliance.web.accounts import add_person
from dock.index import Index
from dock.spot_checks import CheckRefused, checked_seed, checked_size, draw, judgement
from link.locale import Locale
from sealing.age import Identity

from .conftest import DemoRun
from .test_page_security import Client, in_process

EN = Locale("en", "Asia/Shanghai")
PASSWORD = "correct horse battery staple"
SERIAL = "BC-DEMO-0001"


def test_a_draw_is_reproduced_by_its_seed() -> None:
    population = [("B", 7), ("A", 3), ("A", 9), ("C", 1), ("B", 2)]
    first = draw(population, 3, "seed-1")
    assert first == draw(list(reversed(population)), 3, "seed-1")  # order given does not count
    assert len(first) == 3 and set(first) <= set(population)
    assert draw(population, 10, "x") == sorted(population)  # fewer than asked: all
    seen = {tuple(draw(population, 2, f"s{i}")) for i in range(30)}
    assert len(seen) > 3  # the seed decides: different seeds, different samples
    assert len(checked_seed("")) == 16  # none given: a fresh one
    for bad in ("0", "201", "ten"):
        with pytest.raises(CheckRefused):
            checked_size(bad)
    with pytest.raises(CheckRefused, match="needs a remark"):
        judgement({"recorded": "yes", "conduct": "no", "handling": "yes", "care": "na"})
    with pytest.raises(CheckRefused):
        judgement({"recorded": "maybe", "conduct": "no", "handling": "yes", "care": "na"})


@pytest.fixture
def checked_dock(demo_run: DemoRun, tmp_path: Path) -> tuple[Path, Identity, str, str]:
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    dock = Path(shutil.copytree(demo_run.dir / "dock", tmp_path / "dock"))
    people = [("OFFICER-DEMO", "officer", "稽查一科"), ("孙法制", "legal", "法制科"),
              ("周审计", "auditor", "审计科")]  # fmt: skip
    for name, role, dept in people:
        add_person(dock, name, role, dept, PASSWORD)
    index = Index.open(dock / "dock.sqlite", dock=None)
    with index.engine.connect() as conn:
        lo, hi = conn.exec_driver_sql(
            "SELECT min(start_wall_us), max(end_wall_us) FROM segments"
        ).one()
    index.close()
    from dock.compliance.model import day_of

    identity = Identity.parse((demo_run.dir / "agency" / "evidence.key").read_text())
    return dock, identity, day_of(int(lo), EN).isoformat(), day_of(int(hi), EN).isoformat()


def _signed_in(base: str, name: str) -> Client:
    c = Client(base)
    assert c.sign_in(name, PASSWORD).status == 302, name
    return c


def _draw(c: Client, first: str, last: str, seed: str, size: int = 2) -> str:
    form = {"csrf": c.csrf("/checks"), "from": first, "to": last, "serial": SERIAL,
            "officer": "", "size": str(size), "seed": seed}  # fmt: skip
    r = c.request("POST", "/checks", urlencode(form))
    assert r.status == 302, r.text[:300]
    return r.headers["location"].rsplit("/", 1)[1]


def _sample(c: Client, cid: str) -> list[tuple[str, int]]:
    page = c.get(f"/check/{cid}").text
    assert "drawing again with this seed gives the same sample" in page
    return [(s, int(n)) for s, n in re.findall(r'id="item-([^"]+)-(\d+)"', page)]


def _judge(c: Client, cid: str, serial: str, seq: int, **verdicts: str) -> int:
    items = {"recorded": "yes", "conduct": "yes", "handling": "yes", "care": "yes"}
    form = {"csrf": c.csrf(f"/check/{cid}"), "serial": serial, "recording": str(seq)}
    form |= items | verdicts
    return c.request("POST", f"/check/{cid}/judge", urlencode(form)).status


def _play_in_browser(browser: Any, base: str, path: str) -> None:
    """The checker plays the recording in the page, in a real browser, until
    pictures show (the watermark itself: tests/test_playback.py)."""
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(base)
        page.fill("#name", "孙法制")
        page.fill("#password", PASSWORD)
        page.click("form.login button[type=submit]")
        page.wait_for_selector("main")
        assert page.goto(base.rstrip("/") + path).status == 200
        said = page.evaluate(
            "() => { const v = document.querySelector('#player'); v.muted = true;"
            " return v.play().then(() => 'playing', e => String(e)); }"
        )
        assert said == "playing", said
        page.wait_for_function(
            "() => { const v = document.querySelector('#player');"
            " return v.videoWidth > 0 && v.currentTime > 1; }",
            timeout=60_000,
        )
    finally:
        ctx.close()


def test_a_spot_check_is_drawn_played_judged_and_ledgered(
    browser: Any, checked_dock: tuple[Path, Identity, str, str]
) -> None:
    dock, identity, first, last = checked_dock
    with in_process(dock, locale=EN, identity=identity) as base:
        legal = _signed_in(base, "孙法制")
        cid = _draw(legal, first, last, "court-2026")
        sample = _sample(legal, cid)
        assert sample and all(s == SERIAL for s, _ in sample)
        again = _draw(legal, first, last, "court-2026")
        assert _sample(legal, again) == sample  # the seed reproduces the draw
        serial, seq = sample[0]
        # judging what was not played is refused; playing it, then judging, is not
        assert _judge(legal, cid, serial, seq) == 409
        _play_in_browser(browser, base, f"/unit/{serial}/recording/{seq}")
        assert _judge(legal, cid, serial, seq, conduct="no") == 400  # a "no" needs a remark
        assert _judge(legal, cid, serial, seq, conduct="no", remark="未告知当事人") == 302
        assert _judge(legal, cid, serial, seq) == 409  # written once
        assert _judge(legal, cid, serial, 999999) == 400  # not in the sample
        # a playback before a draw does not count for that draw
        later = _draw(legal, first, last, "court-2026")
        assert _judge(legal, later, serial, seq) == 409
        page = legal.get(f"/check/{cid}").text
        assert "未告知当事人" in page
        # the ledger: page, CSV (codes beside the words), PDF; auditors read it too
        ledger = legal.get("/checks/ledger").text
        assert cid in ledger and "未告知当事人" in ledger
        auditor = _signed_in(base, "周审计")
        got = auditor.get("/checks/ledger.csv")
        assert got.status == 200
        rows = list(csv.DictReader(io.StringIO(got.body.decode("utf-8-sig"))))
        (row,) = [r for r in rows if r["Check"] == cid]
        assert row["Unit"] == serial and row["Recording"] == str(seq)
        assert row["conduct (code)"] == "no" and row["recorded (code)"] == "yes"
        assert row["Officer"] == "OFFICER-DEMO" and row["Remark"] == "未告知当事人"
        assert auditor.get("/checks/ledger.pdf").body.startswith(b"%PDF")
        # an officer neither draws nor reads the ledger; an auditor does not draw
        officer = _signed_in(base, "OFFICER-DEMO")
        assert officer.get("/checks").status == 403
        assert officer.get("/checks/ledger").status == 403
        assert auditor.get("/checks").status == 403
        assert _draw_status(legal, last, "2020-01-01") == 400  # the period ends before it starts
        assert _draw_status(legal, "2020-01-01", "2020-01-02") == 409  # nothing to draw from
        assert _draw_status(legal, "2020-02-30", "2020-03-01") == 400
    acts = [(e.who, e.act, e.result) for e in audit.read(dock)[0]]
    assert ("孙法制", "spot_check_draw", "ok") in acts
    assert ("孙法制", "spot_check_judge", "ok") in acts
    assert ("OFFICER-DEMO", "view", "refused") in acts


def _draw_status(c: Client, first: str, last: str) -> int:
    form = {"csrf": c.csrf("/checks"), "from": first, "to": last, "size": "1", "seed": ""}
    return c.request("POST", "/checks", urlencode(form)).status
