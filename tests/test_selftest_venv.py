"""The self-test checks the unit's first-boot venv against its wheels: a real
venv, made as bodycam-venv.service makes it (python -m venv, then pip from
the card's wheelhouse only, hash-pinned, offline) from a wheel built here;
every hashed RECORD line must match the file, and a machine without a unit
venv is "not applicable", never a PASS."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from boot import layout, selftest
from sealing.verify import verify_store

from .conftest import make_unit

ROOT = Path(__file__).resolve().parent.parent
PROBE = "bodycam_probe"
DIST_INFO = f"{PROBE}-1.0.dist-info"
FILES = {
    f"{PROBE}/__init__.py": "def main() -> None:\n    print('probe')\n",
    f"{PROBE}/data.py": "TEXT = 'evidence'\n",
    f"{DIST_INFO}/METADATA": "Metadata-Version: 2.1\nName: bodycam-probe\nVersion: 1.0\n",
    f"{DIST_INFO}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
    "Tag: py3-none-any\n",
    f"{DIST_INFO}/entry_points.txt": "[console_scripts]\nbodycam-probe = bodycam_probe:main\n",
}


def _wheel(dest: Path) -> Path:
    """A small pure-Python wheel with a console script, built by hand."""

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(
        f"{p},sha256={digest(t.encode())},{len(t.encode())}\n" for p, t in FILES.items()
    )
    record += f"{DIST_INFO}/RECORD,,\n"
    path = dest / f"{PROBE}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, t in {**FILES, f"{DIST_INFO}/RECORD": record}.items():
            z.writestr(p, t)
    return path


def _run(*cmd: str | Path) -> None:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A card's root after its first boot: the wheelhouse in opt/bodycam/wheels
    (the wheel, unit-requirements.txt with its hash) and the venv made from it
    by the first-boot commands, with no index and no network."""
    root = tmp_path_factory.mktemp("card")
    wheels = root / selftest.WHEELS
    wheels.mkdir(parents=True)
    whl = _wheel(wheels)
    sha = hashlib.sha256(whl.read_bytes()).hexdigest()
    (wheels / selftest.REQUIREMENTS).write_text(
        f"# the test's wheelhouse\nbodycam-probe==1.0 \\\n    --hash=sha256:{sha}\n"
    )
    venv = root / selftest.VENV
    _run(sys.executable, "-m", "venv", "--clear", "--system-site-packages", venv)
    _run(
        venv / "bin" / "python",
        *("-m", "pip", "install", "--no-index", "--no-cache-dir", "--disable-pip-version-check"),
        *("--find-links", wheels, "--require-hashes", "-r", wheels / selftest.REQUIREMENTS),
    )
    return root


def _site(card: Path) -> Path:
    (site,) = (card / selftest.VENV).glob("lib/python3*/site-packages")
    return site


def _changed(path: Path, touched: dict[Path, bytes]) -> None:
    touched[path] = path.read_bytes()
    path.write_bytes(path.read_bytes() + b"# changed\n")


def test_an_unchanged_venv_passes(card: Path) -> None:
    r = selftest.check_venv(card)
    assert r.ok and r.applicable and r.line() == "PASS venv integrity", r
    record = (_site(card) / DIST_INFO / "RECORD").read_text()
    assert ".pyc,," in record and "RECORD,," in record  # lines without a hash: skipped
    assert "../../../bin/bodycam-probe,sha256=" in record  # the script pip wrote


def test_changed_or_missing_files_fail_and_are_named(card: Path) -> None:
    site = _site(card)
    rel_site = site.relative_to(card)
    kept: dict[Path, bytes] = {}
    try:
        _changed(site / PROBE / "data.py", kept)
        r = selftest.check_venv(card)
        assert not r.ok and r.applicable, r
        assert r.line() == f"FAIL venv integrity: changed {rel_site}/{PROBE}/data.py"
        # a missing file and a changed script too: all named, in RECORD's order
        init = site / PROBE / "__init__.py"
        kept[init] = init.read_bytes()
        init.unlink()
        _changed(card / selftest.VENV / "bin" / "bodycam-probe", kept)
        r = selftest.check_venv(card)
        named = {
            f"{PROBE}/__init__.py": f"missing {rel_site}/{PROBE}/__init__.py",
            f"{PROBE}/data.py": f"changed {rel_site}/{PROBE}/data.py",
            "../../../bin/bodycam-probe": f"changed {selftest.VENV}/bin/bodycam-probe",
        }
        lines = (site / DIST_INFO / "RECORD").read_text().splitlines()
        order = [named[ln.split(",")[0]] for ln in lines if ln.split(",")[0] in named]
        assert r.reason == "; ".join(order), r.reason
    finally:
        for p, data in kept.items():
            p.write_bytes(data)
    assert selftest.check_venv(card).ok


def test_a_pyc_is_not_checked_and_the_budget_is_kept(card: Path) -> None:
    (pyc,) = (_site(card) / PROBE / "__pycache__").glob("data.*.pyc")
    old = pyc.read_bytes()
    try:
        pyc.write_bytes(old[:16] + b"\0" * 8)  # RECORD lists it without a hash
        assert selftest.check_venv(card).ok
    finally:
        pyc.write_bytes(old)
    late = selftest.check_venv(card, budget_s=0)  # unchecked is never passed
    assert not late.ok and late.reason.startswith("not finished within 0 s"), late


def test_the_venv_must_hold_what_the_wheelhouse_pins(card: Path) -> None:
    req = card / selftest.WHEELS / selftest.REQUIREMENTS
    old = req.read_text()
    try:
        req.write_text(old.replace("==1.0", "==1.1") + "pynmea2==1.19.0 --hash=sha256:00\n")
        r = selftest.check_venv(card)
        assert r.reason == "not installed: pynmea2; bodycam-probe is 1.0, the wheelhouse has 1.1"
    finally:
        req.write_text(old)


def test_no_unit_venv_is_not_applicable_never_passed(tmp_path: Path) -> None:
    for root in (None, tmp_path):  # no flashed root; a flashed root before its first boot
        r = selftest.check_venv(root)
        assert not r.applicable and not r.ok and not r.failed
        assert r.line().startswith("N/A venv integrity: no unit venv"), r.line()
        assert r.recorded().startswith("N/A: no unit venv")


def _selftest(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware.cli", "selftest", "--unit", str(unit)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_bodycam_selftest_reports_the_venv_check_and_records_it(card: Path, tmp_path: Path) -> None:
    # a unit directory on that card (its manifest is not this test's business)
    unit = make_unit(card / layout.UNIT)
    (card / layout.MANIFEST).write_text('{"files": []}')
    data = _site(card) / PROBE / "data.py"
    old = data.read_bytes()
    try:
        data.write_bytes(old + b"# changed\n")
        r = _selftest(unit.path)
    finally:
        data.write_bytes(old)
    assert r.returncode == 1
    rel = f"{_site(card).relative_to(card)}/{PROBE}/data.py"
    assert f"FAIL venv integrity: changed {rel}" in r.stdout, r.stdout
    checks = verify_store(unit.path).records[-1]["body"]["checks"]
    assert checks["venv integrity"] == f"changed {rel}"
    # a simulated unit (no card around it): not applicable, said so, not counted
    sim = make_unit(tmp_path / "sim")
    r = _selftest(sim.path)
    assert "N/A venv integrity: no unit venv" in r.stdout, r.stdout
    assert "PASS venv integrity" not in r.stdout and "FAIL venv integrity" not in r.stdout
    assert "not applicable" in r.stderr
    checks = verify_store(sim.path).records[-1]["body"]["checks"]
    assert checks["venv integrity"].startswith("N/A: ")
