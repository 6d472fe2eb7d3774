"""The README's first quick-start command, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys

from .conftest import DemoRun


def test_demo_runs_the_main_job_and_reports(demo_run: DemoRun) -> None:
    tmp_path = demo_run.dir
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    text = demo_run.stdout
    for needle in (
        "unit store: VERIFIED",
        "dock copy: VERIFIED",
        "signed by dock1",
        "unit clock synced from dock",
        "pauses       2",
        "PASS firmware integrity",
        "resume notes 1 given, 1 missing",
        "pre-record 3.0 s",
        "note_missing",
        "gaps         2, 0 unexplained",
        "C2PA Trusted with the agency CA (TEST certificate)",
    ):
        assert needle in text, text
    assert "FAIL" not in text
    segments = tmp_path / "sd" / "var" / "lib" / "bodycam" / "store" / "segments"
    assert not list(segments.iterdir())  # storage freed
    again = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "already exists" in again.stdout
