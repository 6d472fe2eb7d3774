"""The recorder's benchmarks (issue 28) in their short modes, which run and
report (timings on seconds of small video mean nothing), and the live run's
memory over 20 minutes (`-m soak`), which must stay flat."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "tools" / "bench.py"
SMALL = ["--size", "640x360", "--bitrate", "2000000"]


def _bench(*args: str, timeout: float) -> dict:
    r = subprocess.run([sys.executable, str(BENCH), "recorder", *args], capture_output=True,
                       text=True, timeout=timeout, cwd=REPO)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    out: dict = json.loads(r.stdout)
    return out


@pytest.mark.slow
def test_recorder_against_the_peer_short_runs_and_reports() -> None:
    out = _bench("--peer", "--seconds", "2", "--warmup", "2", "--runs", "1", *SMALL, timeout=300)
    for key in ("ours_recording_cpu_percent", "ours_idle_prerecord_cpu_percent",
                "peer_cpu_percent", "ratio_to_peer", "idle_to_recording"):  # fmt: skip
        assert out[key] > 0, (key, out)
    assert len(out["runs"]["ours"]) == len(out["runs"]["peer"]) == 1
    assert len(out["loadavg"]) == 3


@pytest.mark.slow
def test_recorder_presses_short_runs_and_reports() -> None:
    """The default mode: press cycles with a process spinning beside the
    recorder, two runs pooled; each run's p99 and their median reported."""
    out = _bench("--runs", "2", "--seconds", "7", "--warmup", "2", "--busy", "1", *SMALL,
                 timeout=300)  # fmt: skip
    assert out["presses"] >= 2, out
    lat = out["edge_to_recording_ms"]
    assert len(lat["p99_each_run"]) == 2 and 0 < lat["p50"] <= lat["p99"], out
    assert abs(lat["p99_median_of_runs"] - sum(lat["p99_each_run"]) / 2) < 0.01, out  # of two
    assert len(out["edge_to_video_led_ms"]["first_press_with_prerecord"]) == 2, out
    assert out["frames_sealed"] > 0 and "1 busy processes" in out["what"], out
    assert len(out["loadavg"]) == 3


@pytest.mark.slow
def test_recorder_memory_short_runs_and_reports_the_ring_it_filled() -> None:
    """`--memory` in a child process: it runs and reports; four seconds of
    pre-record at 2 Mbit/s is about 1 MB of video in the ring, which the
    report subtracts, with the replay clip, from the process's RSS."""
    out = _bench("--memory", "--warmup", "4", "--minutes", "0.15", "--every", "3", *SMALL,
                 timeout=300)  # fmt: skip
    ring = out["prerecord_ring_mb"]
    assert 0.5 < ring < 1.9, out  # 4 s x 2 Mbit/s = 0.95 MiB, plus audio, minus start-up
    assert out["replay_clip_mb"] > 1.0, out  # the 10 s clip is subtracted, and named
    assert 20 < out["after_imports_mb"] < out["idle_rss_mb"], out
    assert out["outside_ring_idle_mb"] > 0 and out["outside_ring_recording_max_mb"] > 0
    assert len(out["rss_mb"]) >= 3 and isinstance(out["slope_mb_per_hour"], float)
    assert len(out["loadavg"]) == 3


@pytest.mark.soak
@pytest.mark.timeout(2400)
def test_a_20_minute_live_run_stays_flat() -> None:
    """Issue 28: 20 minutes of 1080p30 16 Mbit/s recording after a full 30 s
    pre-record, RSS sampled each minute: slope <= 5 MB per hour (the first
    minute, where the pre-record is sealed and the first files' buffers
    settle, is left out of the fit)."""
    out = _bench("--memory", "--minutes", "20", "--every", "60", timeout=2300)
    print(json.dumps(out))
    assert out["slope_samples"] >= 19, out
    assert out["slope_mb_per_hour"] <= 5, out


@pytest.mark.slow
def test_recorder_start_short_runs_and_reports() -> None:
    out = _bench("--start", "--runs", "1", *SMALL, timeout=300)
    assert out["ours_s"] > 0 and out["selftest_then_run_s"] > 0, out
    assert out["ratio"] > 0 and len(out["runs"]["ours"]) == 1 and len(out["loadavg"]) == 3
