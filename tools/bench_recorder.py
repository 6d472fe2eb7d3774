"""The live recorder on the Pi's path: `bodycam run`'s runtime on a unit
whose camera replays pre-encoded 1080p30 H.264 at 16 Mbit/s from its own
thread (never re-encoded) and whose simulated microphone delivers 30 ms
blocks from another, for --seconds of wall time. Buttons are pressed by
driving gpiozero mock pins: one start with the pre-record ring, then
pause/resume cycles (>= 50 record presses). Reports CPU as a share of one
core, peak RSS split into the pre-record ring and the rest, frames lost
(camera deliveries during the recording vs frames sealed), and the latency
from a button edge to the recording state and to the first frame muxed into
a sealed segment (p50/p99), and to the video LED lit (the first press,
the only one with the 30 s pre-record, given on its own). `--runs` runs
(3), latencies pooled over all their presses, each run's p99 and the median
of those; `--busy N` spins N processes beside the recorder meanwhile (the
issue's press target: two).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.recording import run_live
from firmware.runtime import Recorder
from hal.camera_sim import draw
from sealing.age import Identity
from sealing.unit import provision_unit


def make_h264(path: Path, seconds: int, width: int, height: int, bitrate: int) -> None:
    with av.open(str(path), "w", format="h264") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.bit_rate = bitrate
        s.options = {
            "preset": "ultrafast",
            "g": "30",
            "keyint_min": "30",
            "sc_threshold": "0",
            "nal-hrd": "cbr",
            "x264-params": f"vbv-maxrate={bitrate // 1000}:vbv-bufsize={bitrate // 1000}",
        }
        s.codec_context.time_base = Fraction(1, 30)
        for i in range(seconds * 30):
            frame = av.VideoFrame.from_ndarray(draw(i, width, height), format="rgb24")
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))


def make_h264_elsewhere(path: Path, seconds: int, width: int, height: int, bitrate: int) -> None:
    """make_h264 in a child process, so the encoder's memory is not counted."""
    code = (
        f"from bench_recorder import make_h264; from pathlib import Path; "
        f"make_h264(Path({str(path)!r}), {seconds}, {width}, {height}, {bitrate})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q * len(v)))], 2) if v else float("nan")


def drive(rec: Recorder, seconds: float, warmup: float, out: dict) -> None:
    """Press buttons through the mock pins and time what follows; the
    recorder is stopped however this ends (a run left going would keep the
    busy processes spinning under every later measurement)."""
    try:
        _drive(rec, seconds, warmup, out)
    finally:
        rec.request_stop("bench done")


def _drive(rec: Recorder, seconds: float, warmup: float, out: dict) -> None:
    d = rec.devices
    pin = {n: d.pin_factory.pin(getattr(d.pins, n)) for n in ("record", "function")}
    led = d.pin_factory.pin(d.pins.led_video)
    to_state: list[float] = []
    to_led: list[float] = []
    to_bytes: list[float] = []
    ring_peak = 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < start + warmup:
        ring_peak = max(ring_peak, rec.capture.ring_bytes)
        time.sleep(0.05)
    while time.monotonic() < end - 1.5:
        frames = rec.capture.segmenter.frames_total
        t0 = time.perf_counter()
        pin["record"].drive_low()
        while rec.machine.state.mode != "recording" and time.perf_counter() - t0 < 2:
            time.sleep(0.0005)
        to_state.append((time.perf_counter() - t0) * 1000)
        while not led.state and time.perf_counter() - t0 < 3:
            time.sleep(0.0005)
        to_led.append((time.perf_counter() - t0) * 1000)
        while rec.capture.segmenter.frames_total == frames and time.perf_counter() - t0 < 3:
            time.sleep(0.0005)
        to_bytes.append((time.perf_counter() - t0) * 1000)
        time.sleep(max(0.0, t0 + 0.1 - time.perf_counter()))  # a finger: longer than bounce
        pin["record"].drive_high()
        time.sleep(0.3)
        pin["function"].drive_low()
        time.sleep(0.1)
        pin["function"].drive_high()
        while rec.machine.state.mode == "recording" and time.monotonic() < end:
            time.sleep(0.005)
    out.update(to_state=to_state, to_led=to_led, to_bytes=to_bytes, ring_peak=ring_peak)


@contextmanager
def busy(n: int) -> Iterator[None]:
    """`n` processes spinning on a core each, beside the recorder (the
    issue's press target holds with two of them)."""
    spin = [sys.executable, "-c", "while True: pass"]
    procs = [subprocess.Popen(spin) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _unit(tmpd: Path, clip: Path, size: str, name: str) -> tuple[Path, Identity]:
    identity = Identity.generate()
    unit = tmpd / name
    provision_unit(
        unit,
        serial="BENCH-REC",
        officer="B",
        recipient=identity.recipient,
        docks=[Ed25519PrivateKey.generate().public_key()],
    )
    (unit / "unit.toml").write_text(
        f'[devices.camera]\nbackend = "replay"\nfile = "{clip}"\nsize = "{size}"\n'
        "[policy]\nsegment_s = 16.0\nprerecord_s = 30.0\n"
    )
    return unit, identity


def _cpu() -> float:
    """CPU seconds of this process, every thread (RUSAGE_SELF)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def ours(unit: Path, idle_s: float, record_s: float) -> dict:
    """The live recorder: `idle_s` with the pre-record ring filling, then one
    press and `record_s` of continuous recording. CPU per second of each
    window, from the process's own counters at the window's edges."""
    out: dict = {}

    def run(rec: Recorder) -> None:
        pin = rec.devices.pin_factory.pin(rec.devices.pins.record)
        time.sleep(2)  # past start-up: the windows measure the steady state
        c0, t0 = _cpu(), time.monotonic()
        time.sleep(idle_s)
        c1, t1 = _cpu(), time.monotonic()
        pin.drive_low()
        time.sleep(0.1)
        pin.drive_high()
        while rec.machine.state.mode != "recording" and time.monotonic() < t1 + 5:
            time.sleep(0.01)
        time.sleep(2)  # the pre-record flush is the press's, not the steady state's
        c2, t2 = _cpu(), time.monotonic()
        time.sleep(record_s)
        c3, t3 = _cpu(), time.monotonic()
        out.update(idle=(c1 - c0) / (t1 - t0), recording=(c3 - c2) / (t3 - t2))
        rec.request_stop("bench done")

    run_live(unit, log=lambda _line: None, on_ready=lambda r: threading.Thread(
        target=run, args=(r,), daemon=True).start())  # fmt: skip
    return out


def peer_clip(clip: Path) -> Path:
    """The raw H.264 clip in Matroska, as the peer reads it: ffmpeg cannot
    seek a raw H.264 stream, so `-stream_loop` on it played the clip once
    (10 s) and stopped, and the peer's CPU was divided by four times the
    media it had handled. Copied, not re-encoded."""
    mkv = clip.with_suffix(".mkv")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-framerate", "30", "-i", str(clip),
         "-c", "copy", str(mkv)],
        check=True, timeout=120,
    )  # fmt: skip
    return mkv


def _pictures(files: list[Path]) -> int:
    """Video packets in `files` (ffprobe), to check the peer did the work."""
    total = 0
    for f in files:
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
             "-show_entries", "stream=nb_read_packets", "-of", "json", str(f)],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        total += sum(int(st["nb_read_packets"]) for st in json.loads(out.stdout)["streams"])
    return total


def peer(clip: Path, tmpd: Path, recipient: str, seconds: float) -> float:
    """The peer pipeline on the same clip (in Matroska: `peer_clip`), in
    real time (-re): ffmpeg's segment muxer (16 s MPEG-TS) with AAC encoded
    from 16 kHz PCM, then Debian's `age` encrypting each file. CPU per media
    second (children); refused unless its files hold the `seconds` of
    picture it was asked for."""
    work = tmpd / f"peer-{time.monotonic_ns()}"
    work.mkdir()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-re",
         "-stream_loop", "-1", "-i", str(clip), "-f", "lavfi", "-i",
         "sine=frequency=440:sample_rate=16000", "-t", str(seconds), "-map", "0:v",
         "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-ac", "1", "-f", "segment",
         "-segment_time", "16", "-segment_format", "mpegts", str(work / "seg%03d.ts")],
        check=True, timeout=seconds * 3 + 60,
    )  # fmt: skip
    files = sorted(work.glob("*.ts"))
    for ts in files:
        subprocess.run(["age", "-r", recipient, "-o", f"{ts}.age", str(ts)], check=True,
                       timeout=120)  # fmt: skip
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    got, want = _pictures(files), round(seconds * 30)
    if got < want * 0.98:
        raise RuntimeError(f"the peer wrote {got} pictures of the {want} asked for")
    return (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / seconds


def versus_peer(a: argparse.Namespace) -> dict:
    """`--peer`: ours and the peer alternately, `--runs` times, in one run."""
    w, h = (int(v) for v in a.size.split("x"))
    ours_rec, ours_idle, peers = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        tmpd = Path(tmp)
        clip = tmpd / "clip.h264"
        make_h264_elsewhere(clip, 10, w, h, a.bitrate)
        mkv = peer_clip(clip)
        for i in range(a.runs):
            unit, identity = _unit(tmpd, clip, a.size, f"unit{i}")
            got = ours(unit, a.warmup, a.seconds)
            ours_rec.append(got["recording"])
            ours_idle.append(got["idle"])
            peers.append(peer(mkv, tmpd, str(identity.recipient), a.seconds))
    med = statistics.median
    return {
        "what": f"CPU per media second, {a.size}@30 {a.bitrate // 10**6} Mbit/s + 16 kHz audio, "
        f"{a.seconds:.0f} s recorded, medians of {a.runs}",
        "ours_recording_cpu_percent": round(100 * med(ours_rec), 2),
        "ours_idle_prerecord_cpu_percent": round(100 * med(ours_idle), 2),
        "peer_cpu_percent": round(100 * med(peers), 2),
        "ratio_to_peer": round(med(ours_rec) / med(peers), 2),
        "target_ratio_to_peer": 1.0,
        "idle_to_recording": round(med(ours_idle) / med(ours_rec), 2),
        "target_idle_to_recording": 0.5,
        "runs": {
            "ours": [round(100 * x, 2) for x in ours_rec],
            "idle": [round(100 * x, 2) for x in ours_idle],
            "peer": [round(100 * x, 2) for x in peers],
        },  # fmt: skip
        "loadavg": os.getloadavg(),
    }


def slope_mb_per_hour(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, bytes), in MB per hour."""
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mb = sum(b for _, b in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        raise ValueError("a slope needs samples at two times or more")
    cov = sum((t - mt) * (b - mb) for t, b in points)
    return cov / var * 3600 / 2**20


def memory_run(unit: Path, warmup_s: float, minutes: float, every_s: float) -> list[dict]:
    """`bodycam run`'s runtime in a child process (recorder_memory_child.py):
    its samples, one dict per line it printed."""
    child = Path(__file__).with_name("recorder_memory_child.py")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    out = subprocess.run(
        [sys.executable, str(child), str(unit), str(warmup_s), str(minutes), str(every_s)],
        capture_output=True, text=True, env=env, timeout=warmup_s + minutes * 60 + 120,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"the recorder's child failed ({out.returncode}): {out.stderr[-2000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def memory(a: argparse.Namespace) -> dict:
    """`--memory`: resident memory outside the pre-record ring (the ring
    measured by its own bytes, full: 30 s at the clip's bitrate), and its
    slope over a live recording of `--minutes`, sampled every `--every` s.
    The replay camera's clip, which a Pi does not hold, is subtracted and
    named."""
    w, h = (int(v) for v in a.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        tmpd = Path(tmp)
        clip = tmpd / "clip.h264"
        make_h264_elsewhere(clip, 10, w, h, a.bitrate)
        unit, _ = _unit(tmpd, clip, a.size, "unit")
        samples = memory_run(unit, a.warmup, a.minutes, a.every)
    mib = 2**20
    imports = next(s for s in samples if s["kind"] == "imports")
    idle = next(s for s in samples if s["kind"] == "idle")
    rec = [s for s in samples if s["kind"] == "recording"]
    if len(rec) < 2:
        raise RuntimeError(f"the child gave {len(rec)} recording samples; a slope needs two")
    # the first minute holds the pre-record's flush and the first files'
    # buffers settling; the slope is the steady state's
    steady = [s for s in rec if s["t"] - rec[0]["t"] >= min(60.0, a.minutes * 60 / 2)]
    # recording's figures from the steady samples too: the one at the press
    # still holds the ring being sealed, though the ring's count is already 0
    steady_or_all = steady if len(steady) >= 2 else rec[1:] or rec
    points = [(s["t"], s["rss"]) for s in steady_or_all]
    outside = [(s["rss"] - s["ring"] - s["clip"]) / mib for s in [idle, *steady_or_all]]
    anon = [(s["anon"] - s["ring"] - s["clip"]) / mib for s in [idle, *steady_or_all]]
    return {
        "what": f"resident memory of `bodycam run`'s runtime, {a.size}@30 "
        f"{a.bitrate // 10**6} Mbit/s replay + simulated 16 kHz microphone, "
        f"{a.warmup:.0f} s pre-record filling, then {a.minutes:g} min recording, "
        f"sampled every {a.every:g} s",
        "after_imports_mb": round(imports["rss"] / mib, 1),
        "prerecord_ring_mb": round(idle["ring"] / mib, 1),
        "replay_clip_mb": round(idle["clip"] / mib, 1),
        "idle_rss_mb": round(idle["rss"] / mib, 1),
        "outside_ring_idle_mb": round(outside[0], 1),
        "outside_ring_recording_max_mb": round(max(outside[1:]), 1),
        "target_outside_ring_mb": 60,
        "outside_ring_anon_idle_mb": round(anon[0], 1),
        "outside_ring_anon_recording_max_mb": round(max(anon[1:]), 1),
        "slope_mb_per_hour": round(slope_mb_per_hour(points), 2),
        "slope_samples": len(points),
        "target_slope_mb_per_hour": 5,
        "rss_mb": [round(s["rss"] / mib, 1) for s in rec],
        "loadavg": os.getloadavg(),
    }


def _until_ready(argv: list[str], sock_path: Path, timeout: float = 120) -> float:
    """Start `argv` with NOTIFY_SOCKET as systemd would; seconds from exec to
    its READY=1; then SIGTERM and wait for it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(timeout)
    t0 = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, NOTIFY_SOCKET=str(sock_path)))  # fmt: skip
    try:
        while sock.recv(256) != b"READY=1":
            pass
        return time.monotonic() - t0
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)
        sock.close()
        sock_path.unlink()


def start(a: argparse.Namespace) -> dict:
    """`--start`: exec to ready-to-record (READY=1) of `bodycam run`, which
    runs its pre-use check beside it, against the shipped service before
    (`bodycam selftest` as ExecStartPre, then `bodycam run`), alternately,
    `--runs` times, on the same unit."""
    w, h = (int(v) for v in a.size.split("x"))
    bodycam = [sys.executable, "-m", "firmware.cli"]
    ours, before = [], []
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        tmpd = Path(tmp)
        clip = tmpd / "clip.h264"
        make_h264_elsewhere(clip, 2, w, h, a.bitrate)
        unit, _ = _unit(tmpd, clip, a.size, "unit")
        run = [*bodycam, "run", "--unit", str(unit)]
        for _ in range(a.runs):
            ours.append(_until_ready(run, tmpd / "notify"))
            t0 = time.monotonic()
            subprocess.run([*bodycam, "selftest", "--unit", str(unit)], capture_output=True,
                           timeout=300)  # fmt: skip
            check = time.monotonic() - t0
            before.append(check + _until_ready(run, tmpd / "notify"))
    med = statistics.median
    return {
        "what": f"exec to READY=1 (ready to record), medians of {a.runs}",
        "ours_s": round(med(ours), 2),
        "selftest_then_run_s": round(med(before), 2),
        "ratio": round(med(ours) / med(before), 2),
        "target_s": 1.5,
        "runs": {"ours": [round(x, 2) for x in ours], "before": [round(x, 2) for x in before]},
        "loadavg": os.getloadavg(),
    }


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="bench.py recorder")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument(
        "--warmup", type=float, default=32, help="idle seconds filling the 30 s pre-record ring"
    )
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--bitrate", type=int, default=16_000_000)
    ap.add_argument(
        "--peer",
        action="store_true",
        help="CPU per media second against ffmpeg's segment muxer + age",
    )
    ap.add_argument(
        "--runs", type=int, default=3, help="runs (--peer: of each side); medians are of these"
    )
    ap.add_argument(
        "--memory",
        action="store_true",
        help="resident memory outside the ring, and its slope over --minutes of recording",
    )
    ap.add_argument(
        "--start",
        action="store_true",
        help="exec to ready-to-record, against the self-test run first as before",
    )
    ap.add_argument(
        "--busy", type=int, default=0, help="processes spinning beside the recorder meanwhile"
    )
    ap.add_argument("--minutes", type=float, default=20, help="--memory: minutes recorded")
    ap.add_argument("--every", type=float, default=60, help="--memory: seconds between samples")
    a = ap.parse_args(argv)
    if a.peer:
        return versus_peer(a)
    if a.memory:
        return memory(a)
    if a.start:
        return start(a)
    return presses(a)


def press_run(a: argparse.Namespace, clip: Path, unit: Path) -> dict:
    """One live run with presses: what `drive` timed, and the run's own figures."""
    provision_unit(
        unit,
        serial="BENCH-REC",
        officer="B",
        recipient=Identity.generate().recipient,
        docks=[Ed25519PrivateKey.generate().public_key()],
    )
    (unit / "unit.toml").write_text(
        f'[devices.camera]\nbackend = "replay"\nfile = "{clip}"\nsize = "{a.size}"\n'
        "[policy]\nsegment_s = 16.0\nprerecord_s = 30.0\n"
    )
    out: dict = {}
    lines: list[str] = []

    def on_ready(rec: Recorder) -> None:
        threading.Thread(target=drive, args=(rec, a.seconds, a.warmup, out), daemon=True).start()

    with busy(a.busy):
        cpu0 = _cpu()
        t0 = time.monotonic()
        rec = run_live(unit, log=lines.append, on_ready=on_ready)
        wall = time.monotonic() - t0
        cpu = _cpu() - cpu0
    expected = round(rec.totals.duration_us * 30 / 1_000_000)
    return {
        **out,
        "wall": wall,
        "cpu": cpu / wall,
        "frames_sealed": rec.totals.video_frames,
        "frames_lost": max(0, expected - rec.totals.video_frames),
        "segments": rec.totals.segments,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def presses(a: argparse.Namespace) -> dict:
    """The default mode: `--runs` live runs of press cycles, `--busy`
    processes spinning beside them; latencies pooled over every press, and
    each run's p99 with their median."""
    w, h = (int(v) for v in a.size.split("x"))
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        tmpd = Path(tmp)
        clip = tmpd / "clip.h264"
        make_h264_elsewhere(clip, 10, w, h, a.bitrate)
        for i in range(a.runs):
            runs.append(press_run(a, clip, tmpd / f"unit{i}"))
    med = statistics.median

    def pooled(key: str) -> list[float]:
        return [x for r in runs for x in r.get(key, [])]

    def each_p99(key: str) -> list[float]:
        return [_pct(r.get(key, []), 0.99) for r in runs]

    first_led = [r["to_led"][0] for r in runs if r.get("to_led")]
    ring = max(r.get("ring_peak", 0) for r in runs) / 2**20
    rss = max(r["rss_mb"] for r in runs)
    return {
        "what": f"live runtime, {a.size}@30 {a.bitrate // 10**6} Mbit/s replay + 16 kHz audio, "
        f"{a.runs} runs of {a.seconds:.0f} s, {a.busy} busy processes beside it",
        "loadavg": os.getloadavg(),
        "cpu_percent_of_one_core": round(100 * med(r["cpu"] for r in runs), 1),
        "target_cpu_percent": 5,
        "frames_sealed": sum(r["frames_sealed"] for r in runs),
        "frames_lost": sum(r["frames_lost"] for r in runs),
        "segments": sum(r["segments"] for r in runs),
        "presses": len(pooled("to_state")),
        "edge_to_recording_ms": {
            "p50": _pct(pooled("to_state"), 0.5),
            "p99": _pct(pooled("to_state"), 0.99),
            "p99_each_run": each_p99("to_state"),
            "p99_median_of_runs": round(med(each_p99("to_state")), 2),
        },
        "edge_to_video_led_ms": {
            "p50": _pct(pooled("to_led"), 0.5),
            "p99": _pct(pooled("to_led"), 0.99),
            "first_press_with_prerecord": [round(x, 1) for x in first_led],
        },
        "edge_to_first_frame_muxed_ms": {
            "p50": _pct(pooled("to_bytes"), 0.5),
            "p99": _pct(pooled("to_bytes"), 0.99),
        },
        "target_p99_ms": 50,
        "presses_over_50ms": sorted(round(x) for x in pooled("to_state") if x > 50),
        "peak_rss_mb": round(rss, 1),
        "prerecord_ring_peak_mb": round(ring, 1),
        "rss_outside_ring_mb": round(rss - ring, 1),
        "target_rss_outside_ring_mb": 60,
    }
