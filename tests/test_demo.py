"""The README's first quick-start command, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys

from .conftest import BODYCAM_DOCK, DemoRun


def test_demo_runs_the_main_job_and_reports(demo_run: DemoRun) -> None:
    tmp_path = demo_run.dir
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    text = demo_run.stdout
    for needle in (
        "unit store: VERIFIED",
        "dock copy: VERIFIED",
        "signed by dock1",
        "unit clock synced from dock",
        "PASS firmware integrity",
        "pre-record 3.0 s",
        "note_missing",
        "C2PA Trusted with the agency CA (TEST certificate)",
        # the agency store: locked objects its own administrator cannot delete
        "the administrator's delete of a segment: refused by the store (AccessDenied)",
        # the dock's report, in the dock's default language and zone
        "暂停：2 次",
        "恢复录制时的语音说明：已作 1 次，缺少 1 次",
        "中断：2 次，其中原因不明 0 次",
        "时间为 Asia/Shanghai",
    ):
        assert needle in text, text
    assert "FAIL" not in text
    # the same report in English, one setting away
    english = subprocess.run(
        [*BODYCAM_DOCK, "report", "--dock-dir", str(tmp_path / "dock"), "--language", "en"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert english.returncode == 0, english.stderr
    for needle in (
        "pauses: 2",
        "spoken reasons on resuming: 1 given, 1 missing",
        "gaps: 2, 0 unexplained",
        "times in Asia/Shanghai",
    ):
        assert needle in english.stdout, english.stdout
    segments = tmp_path / "sd" / "var" / "lib" / "bodycam" / "store" / "segments"
    assert not list(segments.iterdir())  # storage freed
    again = subprocess.run(
        [sys.executable, "-m", "firmware.cli", "demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "already exists" in again.stdout


# What must stay readable by its owner alone: keys, the officer's password
# hash, the agency's CA and evidence keys, the escrowed forward-secure keys.
SECRETS = (
    "sd/var/lib/bodycam/keys/device_ed25519.pem",
    "sd/var/lib/bodycam/keys/fss.key",
    "sd/var/lib/bodycam/tls/unit.key",
    "sd/var/lib/bodycam/officer.scrypt",
    "agency/ca.key",
    "agency/evidence.key",
    "agency/docks/dock1.key",
    "agency/c2pa/court.key",
    "agency/escrow/BC-DEMO-0001.fss",
)


def test_under_umask_000_nothing_is_writable_by_others_and_secrets_stay_0600(
    demo_run: DemoRun,
) -> None:
    """The demo ran from a shell with umask 000 (conftest.demo_run): the unit
    folder, the installed firmware, the agency folder, the dock's copies and
    the court copy are all walked (issue 23)."""
    import stat

    assert demo_run.returncode == 0, demo_run.stderr
    walked = [p for p in demo_run.dir.rglob("*") if not p.is_symlink()]
    assert len(walked) > 100  # the whole tree, not an empty folder
    loose = [p for p in walked if p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)]
    assert not loose, [str(p.relative_to(demo_run.dir)) for p in loose[:20]]
    for rel in SECRETS:
        mode = (demo_run.dir / rel).stat().st_mode & 0o777
        assert mode == 0o600, f"{rel}: {oct(mode)}"
