"""The supervisors' page against a hostile browser and a hostile chain
(issue 22, item 6), through the page's real interfaces: `bodycam-dock page`
over HTTP, or the same app under waitress in this process where a test must
move the clock, and Debian's chromium where the issue's flow is a browser's.

The chain is a real unit's (sealed by sealing.store), whose officers have
names a unit can record and a page can get wrong: `$` (matplotlib's
mathtext), `/` (a path segment), `<` (markup), `=` (a spreadsheet formula),
`%`, and `..` (a browser's path step)."""

from __future__ import annotations

import csv
import http.client
import io
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.routing import Map, Rule

from dock import audit
from dock.compliance.web.accounts import add_supervisor
from dock.compliance.web.clock import Clock
from dock.compliance.web.names import SegmentConverter
from dock.compliance.web.serve import create_app, listen
from dock.index import Index
from link.locale import Locale
from sealing import layout
from sealing.age import Identity

from .browsing import follow
from .conftest import BODYCAM_DOCK, make_unit, write_segment
from .english import EN_ARGS

ROOT = Path(__file__).resolve().parent.parent
SERIAL = "BC-NAMES-0001"
SUPERVISOR, PASSWORD = "sergeant.ames", "correct-battery-staple-42"
NAMES = (
    "Wang $\\alpha$ Wei $^$",  # mathtext: a formula, and one that does not parse (500)
    "Zhao/Qian",  # a path segment split in two (404)
    '<b>Li</b> & "Sun"',  # markup
    '=HYPERLINK("http://evil.example/","open me")',  # a spreadsheet formula
    "Zhou=Wu 50%2F",  # = inside, and a %2F that must stay text
    "..",  # a browser's path step
)
FORMULA_STARTS = ("=", "+", "-", "@")


# English in UTC, chosen as an operator chooses them (the default is Chinese,
# Asia/Shanghai): for the tests that read the page's English words and times.
EN_UTC = Locale("en", "UTC")
EN_UTC_ARGS = (*EN_ARGS, "--timezone", "UTC")

# -- the dock ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def names_dock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dock holding one unit's chain: one recording per officer name, each
    with a segment, an evidence mark and a stop, in the chain's own order."""
    work = tmp_path_factory.mktemp("names")
    unit = make_unit(work / "unit", serial=SERIAL)
    with unit.open(boot_body={"cause": "test"}) as store:
        for name in NAMES:
            store.set_officer(name)
            store.append("record_start", {"cause": "button"})
            write_segment(store, os.urandom(4000))
            store.append("mark", {"flag": "evidence"})
            store.append("record_stop", {"cause": "button"})
    dock = work / "dock"
    copy = dock / "units" / SERIAL
    copy.mkdir(parents=True)
    shutil.copyfile(unit.path / "store" / layout.CHAIN, copy / layout.CHAIN)
    index = Index.open(dock / "dock.sqlite")
    try:
        index.pin_unit(SERIAL, "test-key", NAMES[-1])  # the index names the unit: the page reads it
    finally:
        index.close()
    add_supervisor(dock, SUPERVISOR, PASSWORD)
    return dock


@pytest.fixture
def dock(names_dock: Path, tmp_path: Path) -> Path:
    """A copy of its own: sign-in locks and the sign-in log live in the dock folder."""
    return Path(shutil.copytree(names_dock, tmp_path / "dock"))


@dataclass
class FakeClock:
    """Moved by the test, never by waiting."""

    mono: float = 1000.0
    wall0: float = field(default_factory=lambda: datetime.now(UTC).timestamp())

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.wall0 + self.mono - 1000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, wall=self.wall)


@contextmanager
def in_process(
    dock: Path,
    clock: FakeClock | None = None,
    locale: Locale | None = None,
    identity: Identity | None = None,
) -> Iterator[str]:
    """The page's app under waitress, as `bodycam-dock page` runs it, in a
    thread of this process: its URL. `locale`: the dock's language and zone
    (default dock.toml's: none here, so Chinese and Asia/Shanghai);
    `identity`: the evidence key playback decrypts with."""
    app = create_app(dock, clock=clock.clock() if clock else None, locale=locale, identity=identity)
    page = listen(app, "127.0.0.1", 0)
    thread = threading.Thread(target=page.run, daemon=True)
    thread.start()
    try:
        yield page.url
    finally:
        page.stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the page did not stop"


@contextmanager
def cli_page(dock: Path, *extra: str) -> Iterator[str]:
    """`bodycam-dock page` in its own process (`extra`: more of its
    arguments): its URL. Its log goes to a file beside the dock (a pipe
    nobody reads would stall it once full)."""
    log = dock.parent / "page.log"
    with log.open("a") as err:
        proc = subprocess.Popen(
            [*BODYCAM_DOCK, "page", "--dock-dir", str(dock), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=ROOT,
        )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, f"no address printed: {line!r} {log.read_text()}"
        yield found.group(0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- a client that speaks HTTP and keeps cookies ------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


@dataclass
class Client:
    base: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, form: str | None = None, more: dict[str, str] | None = None
    ) -> Answer:
        parts = urlsplit(self.base)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        headers = dict(more or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=form, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            for value in resp.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(value).items():
                    if morsel["expires"] or morsel["max-age"] == "0":
                        self.cookies.pop(name, None)  # deleted
                    else:
                        self.cookies[name] = morsel.value
            return Answer(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)
        finally:
            conn.close()

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def csrf(self, path: str = "/login") -> str:
        page = self.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text[:500]
        return found.group(1)

    def sign_in(self, name: str, password: str, raw_next: str | None = None) -> Answer:
        """Post the sign-in form; `raw_next` goes in as given (already URL-encoded)."""
        form = urlencode({"csrf": self.csrf(), "name": name, "password": password})
        if raw_next is not None:
            form += "&next=" + raw_next
        return self.request("POST", "/login", form)


def _log(dock: Path) -> list[dict[str, Any]]:
    """The sign-in lines of the audit log, intact (dock/audit.py)."""
    path = dock / "audit.jsonl"
    assert path.stat().st_mode & 0o777 == 0o600
    entries, broken = audit.read(dock)
    assert broken is None, broken
    return [{"result": e.result, "name": e.who, **e.detail} for e in entries if e.act == "sign_in"]


# -- importing the page -------------------------------------------------------------

BLOCKED = r"""
import importlib.abc, re, sys
from pathlib import Path

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("c2pa", "av"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Refuse())
for name in ("c2pa", "av"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        pass
    else:
        sys.exit(f"{name} was not blocked")

from dock.compliance.web import (
    accounts, auth, clock, context, exports, names, pages, safe_next, serve, sessions,
    signin_guard, timeline,
)

app = serve.create_app(Path(sys.argv[1]))
client = app.test_client()
token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
signed = client.post("/login", data={"csrf": token, "name": sys.argv[2], "password": sys.argv[3]})
assert signed.status_code == 302, signed.status_code
overview = client.get("/")
day = re.search(r'href="(/unit/[^"]+/\d{4}-\d\d-\d\d)"', overview.text).group(1)
for path in ("/", day, day + "/report.pdf", day + "/events.csv"):
    got = client.get(path)
    assert got.status_code == 200, (path, got.status_code)
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("c2pa", "av"))
assert not loaded, loaded
print("page served without c2pa and av")
"""


def test_the_page_imports_and_serves_without_c2pa_or_av(dock: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(dock), SUPERVISOR, PASSWORD],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "page served without c2pa and av"


# -- where signing in leads -------------------------------------------------------

# As an attacker writes them in a link: already URL-encoded, the page decodes once.
OFF_SITE = (
    "/%09/evil.example/",  # the issue's: a tab, which browsers drop, makes //evil.example/
    "/%0d%0a/evil.example/",
    "//evil.example/",
    "///evil.example/",
    "https://evil.example/",
    "http:evil.example",
    "/%5Cevil.example",  # /\evil.example
    "%5C%5Cevil.example",
    "/%5C/evil.example",
    "javascript:alert(document.domain)",
    "JaVaScRiPt%3Aalert(1)",
    "%2F%2Fevil.example",  # decodes to //evil.example
    "%252F%252Fevil.example",  # decodes to %2F%2Fevil.example
    "/%2F/evil.example",
    "%20//evil.example",
    "/unit/..%2F..%2F%2Fevil.example",
    "/login",  # not a page to go back to
    "/no-such-page",
    "/" + "a" * 3000,
)


def test_signing_in_never_leads_off_the_page(dock: Path) -> None:
    with in_process(dock) as base:
        for raw in OFF_SITE:
            c = Client(base)
            form = c.get("/login?next=" + raw)
            assert form.status == 200 and 'name="next"' not in form.text, raw
            signed = c.sign_in(SUPERVISOR, PASSWORD, raw_next=raw)
            assert signed.status == 302 and signed.location == "/", (raw, signed.location)
        # a page of this app is where the supervisor goes back to, names encoded
        c = Client(base)
        asked = c.get("/officer/Zhao%252FQian/events.csv")
        assert asked.status == 302
        assert asked.location == "/login?next=/officer/Zhao%25252FQian/events.csv"
        raw = asked.location.split("next=", 1)[1]
        signed = c.sign_in(SUPERVISOR, PASSWORD, raw_next=raw)
        assert signed.location == "/officer/Zhao%252FQian/events.csv"
        assert "Zhao/Qian" in c.get(signed.location).text


def test_a_browser_signing_in_stays_on_the_page(browser: Any, dock: Path) -> None:
    with cli_page(dock, *EN_UTC_ARGS) as base:
        host = urlsplit(base).netloc
        ctx = browser.new_context()
        page = ctx.new_page()
        for raw in OFF_SITE:
            page.goto(f"{base}login?next={raw}")
            _browser_sign_in(page)
            assert urlsplit(page.url).netloc == host and urlsplit(page.url).path == "/", (
                raw,
                page.url,
            )
            assert page.locator("#units").count() == 1  # the overview
            follow(page, "header button:text-is('Sign out')")
        page.goto(f"{base}officer/Zhao%252FQian")
        _browser_sign_in(page)
        assert page.locator("h1").inner_text() == "Officer Zhao/Qian: days (UTC)"
        ctx.close()


def _browser_sign_in(page: Any, password: str = PASSWORD) -> None:
    page.fill("#name", SUPERVISOR)
    page.fill("#password", password)
    follow(page, "form.login button[type=submit]")


# -- sessions end -------------------------------------------------------------------


def test_a_cookie_replayed_after_signing_out_is_refused(browser: Any, dock: Path) -> None:
    with cli_page(dock, *EN_UTC_ARGS) as base:
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(base)
        _browser_sign_in(page)
        assert page.locator("#units").count() == 1
        stolen = Client(base, {c["name"]: c["value"] for c in ctx.cookies()})
        day_link = page.locator("#units a").nth(1).get_attribute("href")
        for path in ("/", day_link, "/officer/Zhao%252FQian"):
            assert stolen.get(path).status == 200, path  # the copy works while signed in
        follow(page, "header button:text-is('Sign out')")
        assert "/login" in page.url
        for path in ("/", day_link, f"{day_link}/events.csv", "/officer/Zhao%252FQian"):
            replay = Client(base, dict(stolen.cookies))
            got = replay.get(path)
            assert got.status == 302 and got.location.startswith("/login?next="), path
        ctx.close()
    results = [(e["result"], e["name"]) for e in _log(dock)]
    assert results == [("signed_in", SUPERVISOR), ("signed_out", SUPERVISOR)]


def test_a_new_password_ends_every_session(dock: Path, tmp_path: Path) -> None:
    with in_process(dock) as base:
        first, second = Client(base), Client(base)
        assert first.sign_in(SUPERVISOR, PASSWORD).status == 302
        assert second.sign_in(SUPERVISOR, PASSWORD).status == 302
        assert first.get("/").status == 200 and second.get("/").status == 200
        pw = tmp_path / "pw"
        pw.write_text("another-long-password-7\n")
        added = subprocess.run(
            [*BODYCAM_DOCK, "supervisor-add", "--dock-dir", str(dock), "--name", SUPERVISOR,
             "--password-file", str(pw)],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        for c in (first, second):
            got = c.get("/")
            assert got.status == 302 and got.location.startswith("/login"), got.status
        again = Client(base)
        assert again.sign_in(SUPERVISOR, PASSWORD).status == 401
        assert again.sign_in(SUPERVISOR, "another-long-password-7").status == 302
        assert again.get("/").status == 200
    ended = [e for e in _log(dock) if e["result"] == "session_ended"]
    assert [e["why"] for e in ended] == ["password_changed", "password_changed"]


def test_a_session_ends_after_eight_hours_and_not_by_a_forged_form(dock: Path) -> None:
    clock = FakeClock()
    with in_process(dock, clock, EN_UTC) as base:
        c = Client(base)
        assert c.sign_in(SUPERVISOR, PASSWORD).status == 302
        for token in ("not-the-token", "%C3%A9"):  # é: once a 500, from compare_digest
            forged = c.request("POST", "/logout", f"csrf={token}")
            assert forged.status == 400 and "did not come from this page" in forged.text
            form = f"csrf={token}&name={SUPERVISOR}&password={PASSWORD}"
            assert Client(base, dict(c.cookies)).request("POST", "/login", form).status == 400
        clock.advance(8 * 3600 - 1)
        assert c.get("/").status == 200  # signed in all the same
        clock.advance(1)
        got = c.get("/")
        assert got.status == 302 and got.location == "/login?next=/"


# -- failed sign-ins slow down and lock -----------------------------------------------


def _locked_until(answer: Answer) -> str:
    found = re.search(
        r"is locked until\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d \(UTC\))", answer.text
    )
    assert found, answer.text[:2000]
    return found.group(1)


def _utc(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M:%S +00:00 (UTC)")


def test_twenty_wrong_passwords_then_the_right_one(dock: Path) -> None:
    clock = FakeClock()
    with in_process(dock, clock, EN_UTC) as base:
        c = Client(base)
        # back to back: three are checked, then the name is locked and the
        # rest are refused unchecked, the right password as well
        statuses = [c.sign_in(SUPERVISOR, f"wrong-password-{i}").status for i in range(20)]
        assert statuses == [401] * 3 + [429] * 17
        right = c.sign_in(SUPERVISOR, PASSWORD)
        assert right.status == 429 and "sergeant.ames" in right.text
        assert _locked_until(right) == _utc(clock.wall() + 2)
        # each wait sat out: every wrong password is checked, and the wait grows
        # to its ceiling of 15 minutes
        for i in range(20):
            clock.advance(900)
            assert c.sign_in(SUPERVISOR, f"wrong-password-{i}").status == 401
        right = c.sign_in(SUPERVISOR, PASSWORD)
        assert right.status == 429 and right.headers["retry-after"] == "900"
        assert _locked_until(right) == _utc(clock.wall() + 900)
        assert "as sergeant.ames" in right.text and "15 min 0 s from now" in right.text
        clock.advance(899)
        assert c.sign_in(SUPERVISOR, PASSWORD).status == 429  # still locked
    # a restart keeps the lock: the real command, on the real clock
    with cli_page(dock, *EN_UTC_ARGS) as base:
        refused = Client(base).sign_in(SUPERVISOR, PASSWORD)
        assert refused.status == 429 and "sergeant.ames" in refused.text
    # and it ends when its time has passed, after the restart too
    with in_process(dock, clock) as base:
        c = Client(base)
        assert c.sign_in(SUPERVISOR, PASSWORD).status == 429
        clock.advance(2)
        signed = c.sign_in(SUPERVISOR, PASSWORD)
        assert signed.status == 302 and signed.location == "/"
        assert c.get("/").status == 200
    log = _log(dock)
    assert [e["result"] for e in log].count("wrong_password") == 23
    assert log[-1]["result"] == "signed_in" and log[-1]["name"] == SUPERVISOR
    assert all(e["address"] == "127.0.0.1" for e in log)
    written = (dock / "audit.jsonl").read_text()
    assert PASSWORD not in written and "wrong-password-" not in written
    # refusals are counted, not written one by one: 1st, 10th, ... of each lock
    refused = [e["refused"] for e in log if e["result"] == "locked"]
    assert refused[:2] == [1, 10], refused
    assert (dock / "signin-locks.json").stat().st_mode & 0o777 == 0o600


def test_an_address_that_guesses_many_names_is_locked(dock: Path) -> None:
    clock = FakeClock()
    with in_process(dock, clock, EN_UTC) as base:
        c = Client(base)
        assert c.sign_in(SUPERVISOR, "wrong-password-x").status == 401
        for i in range(9):  # ten names, each wrong once: the address is locked
            assert c.sign_in(f"guess{i}", "wrong-password-x").status == 401
        for name in ("guess11", "<not a name>", SUPERVISOR):
            locked = c.sign_in(name, PASSWORD)
            assert locked.status == 429, name
            words = " ".join(locked.text.split())
            assert "failed sign-ins from this computer's address (127.0.0.1)" in words
        clock.advance(2)
        assert c.sign_in(SUPERVISOR, PASSWORD).status == 302
        # a sign-in forgets the name's failures and the address's: the next
        # wrong one starts afresh
        wrong = Client(base).sign_in("guess12", "wrong-password-x")
        assert wrong.status == 401 and "locked" not in wrong.text


def test_nobody_signs_in_when_the_attempt_cannot_be_recorded(dock: Path) -> None:
    (dock / "audit.jsonl").unlink()
    (dock / "audit.jsonl").mkdir()  # something the page cannot append to
    with in_process(dock, locale=EN_UTC) as base:
        c = Client(base)
        refused = c.sign_in(SUPERVISOR, PASSWORD)
        assert refused.status == 503 and "cannot record sign-in attempts" in refused.text
        assert "Traceback" not in refused.text
        assert c.get("/").status == 302  # not signed in


def test_an_unreadable_lock_file_stops_the_page(dock: Path) -> None:
    (dock / "signin-locks.json").write_text("{not json")
    r = subprocess.run(
        [*BODYCAM_DOCK, "page", "--dock-dir", str(dock), "--port", "0", *EN_UTC_ARGS],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("dock: "), r.stderr
    assert "signin-locks.json" in r.stderr and "Traceback" not in r.stderr


# -- names as the chain has them ----------------------------------------------------


@given(st.text(max_size=40))
def test_any_name_survives_a_url(name: str) -> None:
    """Built into a URL, decoded once as a server does, routed: the same name."""
    urls = Map(
        [Rule("/officer/<segment:name>", endpoint="officer")],
        converters={"segment": SegmentConverter},  # as create_app registers it
    )
    adapter = urls.bind("localhost")
    path = adapter.build("officer", {"name": name})
    segment = path.removeprefix("/officer/")
    assert "/" not in segment and segment.strip(".") != ""  # one segment, never a path step
    assert adapter.match(unquote(path)) == ("officer", {"name": name})


def _text(page: Any, selector: str) -> str:
    return str(page.locator(selector).first.text_content())


def _squeezed(text: str) -> str:
    return "".join(text.split())


def _pdf_words(path: Path) -> str:
    """The PDF's text without white space: a table cell wraps where it likes."""
    text = subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    return _squeezed(text)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def _as_spreadsheet_safe(name: str) -> str:
    """What the CSV holds for a name: an apostrophe before a formula."""
    return "'" + name if name.startswith(FORMULA_STARTS) else name


def test_names_are_shown_as_recorded_everywhere(
    browser: Any, names_dock: Path, tmp_path: Path
) -> None:
    with cli_page(names_dock, *EN_UTC_ARGS) as base:
        ctx = browser.new_context(accept_downloads=True)
        page = ctx.new_page()
        page.goto(base)
        _browser_sign_in(page)
        links = page.locator("#officers a")
        assert sorted(links.all_text_contents()) == sorted(NAMES)
        for i, name in enumerate(NAMES):
            page.goto(base)
            follow(page, page.locator("#officers").get_by_role("link", name=name, exact=True))
            resp_path = urlsplit(page.url).path
            assert resp_path.startswith("/officer/"), page.url
            assert page.locator("h1").inner_text() == f"Officer {name}: days (UTC)"
            assert page.title() == f"{name} · bodycam dock"
            svg_title = f"{name}: one bar per day (UTC)"
            assert page.locator("figure svg text", has_text=svg_title).count() == 1, name
            assert page.locator("main b").count() == 0  # markup in a name stays text
            rows = page.locator("table.recordings td").all_text_contents()
            assert name in rows
            with page.expect_download() as got:
                page.click("#csv")
            saved = tmp_path / f"officer{i}.csv"
            got.value.save_as(saved)
            officers = {r["Officer"] for r in _csv_rows(saved)}
            assert officers == {_as_spreadsheet_safe(name)}, officers
            with page.expect_download() as got:
                page.click("#pdf")
            pdf = tmp_path / f"officer{i}.pdf"
            got.value.save_as(pdf)
            words = _pdf_words(pdf)
            assert _squeezed(f"Officer {name}: days (UTC)") in words, words[:600]
            assert _squeezed(svg_title) in words  # the picture's title, drawn as text

        # the unit's pages: every name in the recordings tables, PDF and CSV
        page.goto(base)
        follow(page, f"#units a:text-is('{SERIAL}')")
        unit_cells = page.locator("table.recordings td").all_text_contents()
        assert all(name in unit_cells for name in NAMES)
        follow(page, "#days a >> nth=0")
        day_cells = page.locator("table.recordings td").all_text_contents()
        assert all(name in day_cells for name in NAMES)
        with page.expect_download() as got:
            page.click("#csv")
        saved = tmp_path / "day.csv"
        got.value.save_as(saved)
        cells = [v for r in _csv_rows(saved) for v in r.values()]
        assert {_as_spreadsheet_safe(n) for n in NAMES} <= set(cells)
        assert not [v for v in cells if v.startswith(FORMULA_STARTS)]  # nothing runs
        with page.expect_download() as got:
            page.click("#pdf")
        pdf = tmp_path / "day.pdf"
        got.value.save_as(pdf)
        words = _pdf_words(pdf)
        assert all(_squeezed(n) in words for n in NAMES), words[:2000]

        # a name the chain does not hold: refused by name, encoded as given
        missing = page.goto(f"{base}officer/No%252FOne%20%3Ci%3E")
        assert missing is not None and missing.status == 404
        assert (
            _text(page, "#error-message") == "No officer No/One <i> recorded on this dock's units."
        )
        ctx.close()
