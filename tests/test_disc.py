"""Long-term records on disc (S0 art. 27, S1 art. 16): `bodycam-dock disc` as
an examiner runs it, on the recording `bodycam demo` made and docked. The
two images are compared byte for byte, read by xorriso into a folder and
checked there with the real `sha256sum -c` and `openssl dgst -sm3`; the
label is read with pdftotext; refusals are one line and in the audit log.
Burning is tested on xorriso's `stdio:` pseudo-drive (a file), never on a
real writer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from dock import audit
from dock.cases import hold_row
from dock.disc import MEDIA, DiscError, fits
from dock.index import Index

from .access_fixtures import approved_request
from .conftest import BODYCAM_DOCK, DemoRun
from .english import EN_ARGS

SERIAL = "BC-DEMO-0001"
RECORDING = "4"
EXAMINER = "Examiner Ames"
UNIT = "某市统计局"  # the making unit, as dock.toml or --name gives it
CASE_NAME = "某公司统计违法案"
CASE_NUMBER = "（2026）统稽字第12号"


@dataclass(frozen=True)
class Dock:
    dir: Path
    agency: Path


@pytest.fixture(scope="module")
def dock(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Dock:
    """A copy of the demo's dock (its audit log and requests are this module's)."""
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    d = tmp_path_factory.mktemp("disc") / "dock"
    shutil.copytree(demo_run.dir / "dock", d)
    return Dock(d, demo_run.dir / "agency")


def _disc(dock: Dock, out: Path, *extra: str, request: str | None = None, **kw: object) -> list:
    args = [*BODYCAM_DOCK, "disc", "--dock-dir", str(dock.dir), "--examiner", EXAMINER,
            "--out", str(out), "--agency", str(dock.agency), "--name", UNIT, *EN_ARGS]  # fmt: skip
    if "--case" not in extra:
        args += ["--serial", SERIAL, "--recording", RECORDING]
    if request is None:  # filed by the examiner, approved by the leadership
        request = approved_request(dock.dir, EXAMINER, "钱局长", act="disc", serial=SERIAL)
    return [*args, "--request", request, *extra]


def _run(cmd: list) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@dataclass(frozen=True)
class Made:
    out: Path
    run: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def made(dock: Dock, tmp_path_factory: pytest.TempPathFactory) -> Made:
    out = tmp_path_factory.mktemp("made") / "disc"
    cmd = _disc(dock, out, "--case-number", CASE_NUMBER, "--case-name", CASE_NAME)
    r = _run(cmd)
    assert r.returncode == 0, r.stdout + r.stderr
    return Made(out, r)


def _extract(image: Path, into: Path) -> Path:
    subprocess.run(
        ["xorriso", "-no_rc", "-report_about", "SORRY", "-osirrox", "on", "-indev", str(image),
         "-extract", "/", str(into)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return into


def _sm3(path: Path) -> str:
    out = subprocess.run(["openssl", "dgst", "-sm3", "-r", str(path)], capture_output=True,
                         text=True, check=True, timeout=60).stdout  # fmt: skip
    return out.split()[0]


def test_two_equal_images_that_check_with_sha256sum_and_openssl_sm3(
    made: Made, tmp_path: Path
) -> None:
    one, two = made.out / "copy-1.iso", made.out / "copy-2.iso"
    assert one.read_bytes() == two.read_bytes()
    assert made.run.stdout.splitlines()[-1] == "done", made.run.stdout
    assert sorted(p.name for p in made.out.iterdir()) == ["copy-1.iso", "copy-2.iso", "label.pdf"]
    disc = _extract(one, tmp_path / "disc")
    ok = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=disc,
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    listed = {}
    for line in (disc / "SM3SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert _sm3(disc / name) == digest, name
        listed[name] = digest
    on_disc = {p.relative_to(disc).as_posix() for p in disc.rglob("*") if p.is_file()}
    assert on_disc == set(listed) | {"SHA256SUMS", "SM3SUMS"}
    sha_listed = {line.split("  ", 1)[1] for line in (disc / "SHA256SUMS").read_text().splitlines()}
    assert sha_listed == set(listed)
    # the court copy exactly as export-case makes it, and the chain it rests on
    folder = disc / f"{SERIAL}_rec{RECORDING}"
    (mp4,) = folder.glob("*.mp4")
    for name in ("report.pdf", "report.html", "manifest.json", "agency-ca.pem",
                 "chain/chain.jsonl", "chain/device_ed25519.pub"):  # fmt: skip
        assert (folder / name).is_file(), name
    inner = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=folder, timeout=60)
    assert inner.returncode == 0
    readme = (disc / "README.txt").read_text(encoding="utf-8-sig")
    for needle in ("sha256sum -c SHA256SUMS", "openssl dgst -sm3", UNIT, EXAMINER, CASE_NAME,
                   CASE_NUMBER, f"{SERIAL}_rec{RECORDING}/", "(Asia/Shanghai)"):  # fmt: skip
        assert needle in readme, needle
    # the volume is named by its lists, and its files are dated alike
    pvd = subprocess.run(["xorriso", "-no_rc", "-indev", str(one), "-pvd_info"],
                         capture_output=True, text=True, check=True, timeout=60).stdout  # fmt: skip
    sums = subprocess.run(["sha256sum", "SHA256SUMS"], cwd=disc, capture_output=True, text=True,
                          check=True, timeout=60).stdout.split()[0]  # fmt: skip
    assert f"BODYCAM_{sums[:16].upper()}" in pvd, pvd
    assert len({os.stat(p).st_mtime for p in disc.rglob("*")}) == 1
    assert sums in made.run.stdout and _sm3(disc / "SM3SUMS") in made.run.stdout
    assert mp4.stat().st_size > 1_000_000


def test_the_label_names_unit_maker_date_case_recording_copy_and_hashes(
    made: Made, tmp_path: Path
) -> None:
    pdf = made.out / "label.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True, timeout=60).stdout  # fmt: skip
    disc = _extract(made.out / "copy-2.iso", tmp_path / "disc")
    sha = subprocess.run(["sha256sum", "SHA256SUMS"], cwd=disc, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()[0]  # fmt: skip
    for needle in ("Making unit", UNIT, "Made by", EXAMINER, "Date made", CASE_NAME,
                   CASE_NUMBER, "Copy 1 of 2", "Copy 2 of 2", "TEST CERTIFICATE",
                   f"unit {SERIAL}, recording {RECORDING}, started"):  # fmt: skip
        assert needle in text, (needle, text)
    flat = "".join(text.split())
    assert flat.count(sha) == 2 and flat.count(_sm3(disc / "SM3SUMS")) == 2, text
    assert flat.count("+08:00(Asia/Shanghai)") >= 4, text  # made, and the recording's start


def test_the_disc_is_in_the_audit_log_with_its_request_and_hashes(made: Made, dock: Dock) -> None:
    entries, broken = audit.read(dock.dir)
    assert broken is None, broken
    discs = [e for e in entries if e.act == "disc" and e.detail.get("out") == str(made.out)]
    assert [(e.who, e.result) for e in discs] == [(EXAMINER, "started"), (EXAMINER, "ok")]
    started, ok = discs
    assert started.detail["approver"] == ok.detail["approver"] == "钱局长"
    assert started.detail["request"] == ok.detail["request"]
    image = subprocess.run(["sha256sum", str(made.out / "copy-1.iso")], capture_output=True,
                           text=True, check=True, timeout=60).stdout.split()[0]  # fmt: skip
    assert ok.detail["iso_sha256"] == image and ok.target == f"{SERIAL} recording {RECORDING}"
    assert ok.detail["burned"] == ""


@pytest.mark.parametrize("case", ["none", "unknown", "pending", "court copy", "another's"])
def test_no_disc_without_an_approved_disc_request(dock: Dock, tmp_path: Path, case: str) -> None:
    rid, want = "", "an approved request is needed (--request ID; file it in the page)"
    if case == "unknown":
        rid, want = "nosuchrequest", "no request nosuchrequest at this dock"
    elif case == "pending":
        rid = approved_request(dock.dir, EXAMINER, "钱局长", act="disc", serial=SERIAL)
        index = Index.open(dock.dir / "dock.sqlite", dock=None)
        with index.engine.begin() as conn:  # filed, not yet decided
            conn.exec_driver_sql("UPDATE access_requests SET state='pending', approver='', "
                                 "decided_us=NULL WHERE id=?", (rid,))  # fmt: skip
        index.close()
        want = f"request {rid} is awaiting approval"
    elif case == "court copy":
        rid = approved_request(dock.dir, EXAMINER, "钱局长", act="court_copy", serial=SERIAL)
        want = f"request {rid} is for court copy"
    elif case == "another's":
        rid = approved_request(dock.dir, "孙法制", "钱局长", act="disc", serial=SERIAL)
        want = f"request {rid} was filed by 孙法制: only they may use it"
    out = tmp_path / "disc"
    r = _run(_disc(dock, out, request=rid))
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.splitlines() == [f"dock: no disc: {want}"], r.stderr
    assert r.stdout == "" and not list(out.glob("*.iso")) and not (out / ".disc.partial").exists()
    last = audit.read(dock.dir)[0][-1]
    assert (last.who, last.act, last.result) == (EXAMINER, "disc", "refused"), last
    assert last.detail["request"] == rid and last.target == f"{SERIAL} recording {RECORDING}"


def test_a_disc_is_never_overwritten(dock: Dock, tmp_path: Path) -> None:
    out = tmp_path / "disc"
    out.mkdir()
    (out / "copy-1.iso").write_bytes(b"an earlier disc")
    r = _run(_disc(dock, out))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.splitlines() == [
        f"dock: {out} holds copy-1.iso already: a disc is never overwritten"
    ], r.stderr
    assert (out / "copy-1.iso").read_bytes() == b"an earlier disc"
    assert sorted(p.name for p in out.iterdir()) == ["copy-1.iso"]


@pytest.mark.parametrize("case", ["by case", "no xorriso", "no recording"])
def test_other_refusals_are_one_line(dock: Dock, tmp_path: Path, case: str) -> None:
    extra: tuple[str, ...] = ()
    env = None
    if case == "by case":
        extra, want = ("--case", "12"), "dock: no case 12 at this dock"
    elif case == "no xorriso":  # the console script's own python, and nothing on the PATH
        env, want = (
            {**os.environ, "PATH": str(tmp_path)},
            ("dock: xorriso is not installed: apt-get install xorriso"),
        )
    cmd = _disc(dock, tmp_path / "disc", *extra)
    if case == "no recording":
        cmd[cmd.index("--recording") + 1] = "5"
        want = f"dock: no recording of {SERIAL} starts at record 5"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(want), r.stderr
    assert not (tmp_path / "disc").exists()


def test_a_cases_recordings_go_on_a_disc_that_names_the_case(dock: Dock, tmp_path: Path) -> None:
    """`--case`: every recording filed in it, the label and each court copy
    naming the case as it was filed (S2 art. 12)."""
    number, name = "（2026）统稽字第13号", "某商店统计违法案"
    index = Index.open(dock.dir / "dock.sqlite", dock=None)
    try:
        assert index.add_case({"number": number, "name": name, "opened_by": "钱局长",
                               "opened_us": 1})  # fmt: skip
        link = {"number": number, "serial": SERIAL, "recording": int(RECORDING), "by": "钱局长",
                "at_us": 2}  # fmt: skip
        assert index.file_in_case(link, hold_row(number, SERIAL, int(RECORDING), "钱局长", 2))
    finally:
        index.close()
    out = tmp_path / "disc"
    r = _run(_disc(dock, out, "--case", number))
    assert r.returncode == 0, r.stdout + r.stderr
    disc = _extract(out / "copy-1.iso", tmp_path / "x")
    (manifest,) = disc.glob("*/manifest.json")
    assert json.loads(manifest.read_text())["recording"]["cases"] == [
        {"number": number, "name": name}
    ]
    pdf = ["pdftotext", "-layout", str(out / "label.pdf"), "-"]
    label = subprocess.run(pdf, capture_output=True, text=True, check=True, timeout=60).stdout
    assert number in label and name in label, label
    r = _run(_disc(dock, tmp_path / "again", "--case", number, "--case-name", "x"))
    assert r.returncode == 2 and "not both" in r.stderr, r.stderr


def test_sizes_beyond_the_media_are_refused() -> None:
    fits(MEDIA["dvd"], "dvd")
    with pytest.raises(DiscError) as exc:
        fits(MEDIA["dvd"] + 1, "dvd")
    said = str(exc.value)
    assert "4700372993 bytes" in said and "4700372992 bytes" in said and "--media bd25" in said
    fits(MEDIA["dvd"] + 1, "bd25")
    with pytest.raises(DiscError):
        fits(MEDIA["bd25"] + 1, "bd25")


def test_burned_to_a_pseudo_drive_asking_for_each_blank_disc(dock: Dock, tmp_path: Path) -> None:
    """xorriso's stdio: drive stands in for the writer. The operator first
    presses Enter without taking copy 1 out (asked again: not blank), then
    swaps discs; both discs are read back and checked."""
    drive = tmp_path / "drive"
    out = tmp_path / "disc"
    cmd = _disc(dock, out, "--burn", f"stdio:{drive}")
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None and proc.stdout is not None
    questions, other = [], []
    for line in proc.stderr:
        if "press Enter" not in line:
            other.append(line)
            continue
        questions.append(line)
        if len(questions) == 2:  # the operator takes copy 1 out this time
            drive.rename(tmp_path / "burned-1")
        proc.stdin.write("\n")
        proc.stdin.flush()
    stdout = proc.stdout.read()
    assert proc.wait(timeout=300) == 0, stdout + "".join(other)
    assert len(questions) == 2 and "is not blank" in questions[1], questions
    assert "put a blank disc for copy 2 of 2" in questions[0], questions
    drive.rename(tmp_path / "burned-2")
    image = (out / "copy-1.iso").read_bytes()
    for n in (1, 2):
        assert f"copy {n} of 2 read back from stdio:{drive}" in stdout, stdout
        assert (tmp_path / f"burned-{n}").read_bytes()[: len(image)] == image
    assert stdout.splitlines()[-1] == "done"
    ok = audit.read(dock.dir)[0][-1]
    assert (ok.act, ok.result, ok.detail["burned"]) == ("disc", "ok", f"stdio:{drive}")
