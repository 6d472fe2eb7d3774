"""Fixtures shared across areas. Sealing: a provisioned unit with known parties."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealing.age import Identity
from sealing.store import SegmentMeta, Store
from sealing.unit import open_unit, provision_unit

# The dock's console script, as an operator runs it (pip install '.[dock]').
BODYCAM_DOCK = (str(Path(sys.executable).with_name("bodycam-dock")),)
# The real browser the supervisors' page is tested in (Debian's), driven by
# Playwright, which never downloads a browser of its own.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The zone the tests' agency runs in: days, expiries and listings are its.
AGENCY_ZONE = ZoneInfo("Asia/Shanghai")


def agency_today() -> date:
    """Today in the agency's zone; from 16:00 UTC it is already tomorrow."""
    return datetime.now(AGENCY_ZONE).date()


@dataclass
class Agency:
    """The parties outside the unit: evidence identity and two enrolled docks
    (a rack's usual dock and another of the agency's)."""

    identity: Identity
    dock: Ed25519PrivateKey
    other_dock: Ed25519PrivateKey
    escrow: bytes = b""


@dataclass
class Unit:
    path: Path
    agency: Agency

    def open(self, **kw: object) -> Store:
        return open_unit(self.path, **kw)  # type: ignore[arg-type]


def make_unit(
    path: Path,
    serial: str = "BC-TEST-0001",
    agency: Agency | None = None,
    officer: str = "OFFICER-7",
) -> Unit:
    """A provisioned unit; several units share an agency when one is given."""
    agency = agency or Agency(
        Identity.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    )
    agency.escrow = provision_unit(
        path,
        serial=serial,
        officer=officer,
        recipient=agency.identity.recipient,
        docks=[agency.dock.public_key(), agency.other_dock.public_key()],
    )
    return Unit(path, agency)


def chain_to_dock(unit: Unit, dock: Path, serial: str, officer: str) -> Path:
    """A dock folder holding `unit`'s chain as a pull leaves it (the copy and
    the index row the page reads), without a pull: for page tests."""
    import shutil

    from dock.index import Index
    from sealing import layout

    (dock / "units" / serial).mkdir(parents=True)
    shutil.copyfile(unit.path / "store" / layout.CHAIN, dock / "units" / serial / layout.CHAIN)
    index = Index.open(dock / "dock.sqlite")
    try:
        index.pin_unit(serial, "test-key", officer)
    finally:
        index.close()
    return dock


def write_segment(store: Store, data: bytes, ext: str = "ts", step: int = 4096) -> None:
    start = store.clock()
    w = store.open_segment(ext)
    for i in range(0, len(data), step):
        w.write(data[i : i + step])
    end = store.clock()
    w.close(SegmentMeta(start=start, end=end, duration_us=end.mono_us - start.mono_us))


@pytest.fixture
def unit(tmp_path: Path) -> Unit:
    return make_unit(tmp_path / "unit")


@pytest.fixture
def recorded_unit(unit: Unit) -> Unit:
    """A unit with three segments, a still and a few events, closed."""
    with unit.open(boot_body={"firmware": "test"}) as store:
        write_segment(store, os.urandom(150_000))
        store.append("pause", {"reason": "to_be_stated"})
        store.append("resume", {})
        write_segment(store, os.urandom(70_000))
        write_segment(store, os.urandom(5_000), ext="jpg")
        store.append("mark", {"flag": "evidence"})
        write_segment(store, b"")
    return unit


@dataclass(frozen=True)
class DemoRun:
    """`bodycam demo --out DIR`, run once as a user runs it: the unit, the
    agency, the dock's copy and the court copy it leaves behind."""

    dir: Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real small file system (a 4 MiB tmpfs) for full-disk tests."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """Run from a shell whose umask is 000 (issue 23): whatever the demo
    makes (provisioning, recording, docking, the court copy) must still be
    writable by its owner alone (tests/test_demo.py walks it)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("demo")
    r = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
        preexec_fn=lambda: os.umask(0),
    )
    return DemoRun(out, r.returncode, r.stdout, r.stderr)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium (scripts/setup does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def files_the_verifier_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that gets the name of every media file sealing.verify reads
    itself from now on (not those handed to it as already read)."""
    from sealing import verify as sealing_verify

    read: list[str] = []
    real_read_files = sealing_verify._read_files

    def spied(todo, *args, **kwargs):  # type: ignore[no-untyped-def]
        read.extend(f.file for f in todo)
        return real_read_files(todo, *args, **kwargs)

    monkeypatch.setattr(sealing_verify, "_read_files", spied)
    return read
