"""`bodycam verify`'s benchmark (`tools/bench.py sealing --verify`) runs and
reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_verify_short_runs_and_reports() -> None:
    """`tools/bench.py sealing --verify --short`: it runs and reports (its
    timings on a few MiB mean nothing; without --short it measures)."""
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench.py"), "sealing", "--verify", "--short"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["part"] == "sealing-verify" and out["short"] is True and out["segments"] >= 1
    for side in ("chacha20_poly1305", "sha256"):
        assert out["openssl_MBps"][side] > 0
    for key in ("limit_cpu_s", "verify_cpu_s", "startup_cpu_s", "ratio", "ratio_wall"):
        assert out[key] > 0, key
    assert len(out["loadavg_start"]) == 3 and len(out["loadavg_end"]) == 3
