"""The officer's fingerprint at export (issue 25, S0 art. 19), end to end
through the dock's commands and libfprint's virtual image reader: enrolled
with `bodycam-dock enroll`, matched at `bodycam-dock pull`; the unit records
the verdict with the reader's identity; a different finger is refused and
recorded, and scanned again without re-docking; without a reader the
command refuses and names the explicit no-reader mode."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dock import audit
from dock.compliance.web.accounts import add_person
from dock.index import Index

from . import fingerprints
from .conftest import BODYCAM_DOCK
from .english import EN_ARGS
from .export_fixtures import PASSWORD, Link, start_link

OFFICER_FINGER, OTHER_FINGER = 1, 2  # seeds far apart under NBIS (tests/test_fingerprint.py)
PROMPTS = ("put the finger on the reader",)
READER = "libfprint virtual_image/0"


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    lk = start_link(tmp_path, segments=2, size=50_000)
    yield lk
    lk.close()


def _driven(args: list[str], sock: Path, scans: list[np.ndarray],
            timeout: float = 120.0) -> tuple[int, str]:  # fmt: skip
    """Run a dock command with the virtual reader at `sock`; each time it
    asks for a finger (its prompt line), send the next scan. Its output."""
    env = {**os.environ, "FP_VIRTUAL_IMAGE": str(sock)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: queue.Queue[str] = queue.Queue()
    # a thread reads lines: a selector over a buffered pipe would miss lines already read
    threading.Thread(target=lambda: [lines.put(x) for x in stdout] + [lines.put("")],
                     daemon=True).start()  # fmt: skip
    out: list[str] = []
    sensor = None
    left = list(scans)
    try:
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                proc.kill()
                raise AssertionError(f"the command said nothing for {timeout} s: {out}") from None
            if not line:
                break
            out.append(line)
            if any(p in line for p in PROMPTS):
                if sensor is None:  # the socket exists once the reader is open
                    sensor = fingerprints.VirtualSensor(str(sock))
                assert left, "asked for more fingers than given: " + "".join(out)
                sensor.queue(left.pop(0))
                sensor.due()
        return proc.wait(timeout=30), "".join(out)
    finally:
        if sensor is not None:
            sensor.close()
        if proc.poll() is None:
            proc.kill()


def _enroll(dock: Path, name: str, finger: int, tmp: Path) -> tuple[int, str]:
    f = fingerprints.make_finger(finger)
    scans = [fingerprints.impression(f, rng=(finger, k)) for k in range(5)]
    args = [*BODYCAM_DOCK, "enroll", "--dock-dir", str(dock), "--name", name, *EN_ARGS]
    return _driven(args, tmp / "enroll.sock", scans)


def _pull(link: Link, dock: Path, fingers: list[int], tmp: Path) -> tuple[int, str]:
    pw = tmp / "pw.txt"
    pw.write_text(PASSWORD)
    creds = link.dir / "docks" / "dock1"
    args = [*BODYCAM_DOCK, "pull", *EN_ARGS, "--unit", "{}:{}".format(*link.running.address)]
    args += ["--dock-dir", str(dock), "--cert", str(creds / "dock.crt")]
    args += ["--key", str(creds / "dock.key"), "--ca", str(link.dir / "ca.crt")]
    args += ["--password-file", str(pw), "--inventory", str(link.inventory)]
    args += ["--reader", "virtual_image"]
    scans = [fingerprints.impression(fingerprints.make_finger(s), rng=(s, 50 + i))
             for i, s in enumerate(fingers)]  # fmt: skip
    return _driven(args, tmp / "pull.sock", scans)


def _new_dock(tmp: Path, officer: str) -> Path:
    dock = tmp / "dock"
    dock.mkdir()
    Index.open(dock / "dock.sqlite").close()
    add_person(dock, officer, "officer", "稽查一科", "a long enough password")
    return dock


def test_an_enrolled_finger_lets_the_export_proceed_and_the_unit_records_the_reader(
    link: Link, tmp_path: Path
) -> None:
    officer = link.store.officer
    dock = _new_dock(tmp_path, officer)
    code, out = _enroll(dock, officer, OFFICER_FINGER, tmp_path)
    assert code == 0, out
    assert f"fingerprint enrolled with {READER}" in out
    index = Index.open(dock / "dock.sqlite", dock=None)
    row = index.print_of(officer)
    index.close()
    assert row is not None and row["reader"] == READER
    entries, broken = audit.read(dock)
    assert broken is None and (entries[-1].act, entries[-1].target) == ("enroll", officer)
    # a different finger first: refused by the unit, recorded, scanned again
    before = link.files()
    code, out = _pull(link, dock, [OTHER_FINGER, OFFICER_FINGER], tmp_path)
    assert code == 0, out
    assert "fingerprint not confirmed: 4 tries left" in out, out
    assert link.files() == set() and before  # pulled and released in this docking
    auths = [(x.body["result"], x.body["reader"], x.body.get("fingerprint_ok"))
             for x in link.store.records() if x.type == "auth"]  # fmt: skip
    assert [(a[0], a[1]) for a in auths] == [("no_fingerprint", READER), ("ok", READER)], auths


def test_a_finger_never_matched_is_refused_and_the_unit_keeps_its_segments(
    link: Link, tmp_path: Path
) -> None:
    officer = link.store.officer
    dock = _new_dock(tmp_path, officer)
    assert _enroll(dock, officer, OFFICER_FINGER, tmp_path)[0] == 0
    before = link.files()
    code, out = _pull(link, dock, [OTHER_FINGER] * 5, tmp_path)
    assert code == 1 and "Traceback" not in out, out
    assert "officer not authorised" in out, out
    assert link.files() == before  # nothing released
    results = [x.body["result"] for x in link.store.records() if x.type == "auth"]
    assert results and set(results) == {"no_fingerprint"}, results


def test_no_enrolled_print_and_no_reader_are_refused_in_one_line(
    link: Link, tmp_path: Path
) -> None:
    dock = _new_dock(tmp_path, "someone else")
    code, out = _pull(link, dock, [], tmp_path)  # the reader exists; no print for the officer
    assert code == 1 and "has no enrolled fingerprint at this dock" in out, out
    assert "Traceback" not in out
    # no reader at all (no virtual one, no USB one here)
    pw = tmp_path / "pw.txt"
    creds = link.dir / "docks" / "dock1"
    args = [*BODYCAM_DOCK, "pull", *EN_ARGS, "--unit", "{}:{}".format(*link.running.address)]
    args += ["--dock-dir", str(dock), "--cert", str(creds / "dock.crt")]
    args += ["--key", str(creds / "dock.key"), "--ca", str(link.dir / "ca.crt")]
    args += ["--password-file", str(pw), "--inventory", str(link.inventory)]
    env = {k: v for k, v in os.environ.items() if k != "FP_VIRTUAL_IMAGE"}
    r = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1, r.stderr
    assert "no fingerprint reader found" in r.stderr and "--fingerprint match|no-match" in r.stderr
    assert "Traceback" not in r.stderr
    # enrolling someone without an account
    r = subprocess.run([*BODYCAM_DOCK, "enroll", "--dock-dir", str(dock), "--name", "nobody",
                        *EN_ARGS], capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert r.returncode == 2 and "no account nobody" in r.stderr, r.stderr
