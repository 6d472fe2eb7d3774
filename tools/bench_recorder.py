"""The recorder on the Pi's path, in real time: pre-encoded 1080p30 H.264 at
16 Mbit/s replayed (never re-encoded), AAC encoding of the microphone, MPEG-TS
muxing, sealing (age + hashes + signed records + 1 s fsync) and the state
machine, for --seconds of wall time. Reports the process's CPU use as a
share of one core, frames pushed vs sealed (rollover loss), the time from a
record press to the recording state, and peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from capture.pipeline import CaptureConfig
from firmware import machine as m
from firmware.daemon import Recorder, VirtualTime
from firmware.unitclock import UnitClock
from hal.camera_replay import ReplayCamera
from hal.camera_sim import draw
from hal.microphone_sim import RATE, SimMicrophone, SimSpeaker
from sealing.age import Identity
from sealing.unit import open_unit, provision_unit


def make_h264(path: Path, seconds: int, width: int, height: int, bitrate: int) -> None:
    with av.open(str(path), "w", format="h264") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.bit_rate = bitrate
        s.options = {"preset": "ultrafast", "g": "30", "keyint_min": "30", "sc_threshold": "0",
                     "nal-hrd": "cbr", "x264-params": f"vbv-maxrate={bitrate // 1000}:"
                     f"vbv-bufsize={bitrate // 1000}"}
        s.codec_context.time_base = Fraction(1, 30)
        for i in range(seconds * 30):
            frame = av.VideoFrame.from_ndarray(draw(i, width, height), format="rgb24")
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))


def make_h264_elsewhere(path: Path, seconds: int, width: int, height: int,
                        bitrate: int) -> None:
    """make_h264 in a child process, so the encoder's memory is not counted."""
    code = (f"from bench_recorder import make_h264; from pathlib import Path; "
            f"make_h264(Path({str(path)!r}), {seconds}, {width}, {height}, {bitrate})")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


def _recorder(unit: Path, cam: ReplayCamera, cfg: CaptureConfig) -> Recorder:
    """A provisioned throw-away unit with the recorder on virtual time."""
    provision_unit(unit, serial="BENCH-REC", officer="B", recipient=Identity.generate().recipient,
                   docks=[Ed25519PrivateKey.generate().public_key()])
    vt = VirtualTime(time.time_ns())
    clock = UnitClock(monotonic_ns=vt.monotonic_ns, time_ns=vt.time_ns)
    store = open_unit(unit, clock=clock.stamp)
    return Recorder(store, clock, vt, cam, SimMicrophone(), SimSpeaker(), m.Policy(), cfg,
                    log=lambda _l: None)  # type: ignore[arg-type]


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q * len(v)))], 2)


def press_latency(tmpd: Path, cam: ReplayCamera, cfg: CaptureConfig, presses: int) -> dict:
    """Record button pin driven low on gpiozero's MockFactory -> gesture -> machine
    in its recording state, and -> first bytes handed to the sealing writer;
    each press with a full pre-record ring (filled as fast as possible)."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from hal.gpio import Gestures, UnitPins

    rec = _recorder(tmpd / "unit2", cam, cfg)
    store, vt = rec.store, rec.vt
    rec.event(m.ClockStatus("synced", "gps", 0))
    marks: dict[str, float] = {}
    real_open = rec._open_sink  # noqa: SLF001

    def timed_open(index: int):  # noqa: ANN202
        sink = real_open(index)
        real_write = sink.write

        def write(data: bytes) -> None:
            marks.setdefault("first_write", time.perf_counter())
            real_write(data)

        sink.write = write  # type: ignore[method-assign]
        return sink

    rec.capture.segmenter._open_sink = timed_open  # noqa: SLF001

    def gesture(kind: str, button: str, _t: float) -> None:
        if kind == "press":
            actions = rec.machine.handle(m.Press(button, vt.mono_ns // 1000))
            marks.setdefault("state", time.perf_counter())  # the machine is recording
            for a in actions:  # the daemon's dispatch: capture starts, ring is sealed
                rec._do(a)  # noqa: SLF001
            marks.setdefault("prerecord_sealed", time.perf_counter())

    factory = MockFactory(pin_class=MockPWMPin)
    pins = UnitPins(factory, Gestures(gesture), lambda: vt.mono_ns / 1e9)
    pin = factory.pin(pins.pins.record)
    fps, per_frame = 30, RATE // 30
    i = 0
    to_state, to_write, to_ring = [], [], []
    for _ in range(presses):
        for _ in range(int(cfg.prerecord_s * fps) + 30):  # fill the ring
            at = 1_000_000 + i * 1_000_000 // fps
            vt.mono_ns = at * 1000
            rec._media(i, at, per_frame)  # noqa: SLF001
            i += 1
        marks.clear()
        t0 = time.perf_counter()
        pin.drive_low()
        to_state.append((marks["state"] - t0) * 1000)
        to_write.append((marks.get("first_write", time.perf_counter()) - t0) * 1000)
        to_ring.append((marks["prerecord_sealed"] - t0) * 1000)
        for _ in range(30):
            at = 1_000_000 + i * 1_000_000 // fps
            vt.mono_ns = at * 1000
            rec._media(i, at, per_frame)  # noqa: SLF001
            i += 1
        pin.drive_high()  # released after a second (a real press, not bounce)
        rec.event(m.Hold("record", vt.mono_ns // 1000))
        for f in store.segments.iterdir():
            f.unlink()  # keep the disk use flat; these files are not the subject here
    pins.close()
    store.close()
    return {"presses": presses,
            "edge_to_recording_state_ms": {"median": _pct(to_state, 0.5),
                                           "p99": _pct(to_state, 0.99)},
            "edge_to_first_bytes_sealed_ms": {"median": _pct(to_write, 0.5),
                                              "p99": _pct(to_write, 0.99)},
            "edge_to_whole_prerecord_sealed_ms": {"median": _pct(to_ring, 0.5),
                                                  "p99": _pct(to_ring, 0.99)},
            "target_p99_ms": 50}


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="bench.py recorder")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--mbit", type=float, default=16)
    p.add_argument("--segment-seconds", type=float, default=10)
    p.add_argument("--prerecord-seconds", type=float, default=30)
    p.add_argument("--presses", type=int, default=50)
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp:
        tmpd = Path(tmp)
        src = tmpd / "replay.h264"
        make_h264_elsewhere(src, 10, w, h, int(args.mbit * 1e6))
        cam = ReplayCamera(src)
        bitrate = src.stat().st_size * 8 / 10
        cfg = CaptureConfig(segment_s=args.segment_seconds, prerecord_s=args.prerecord_seconds,
                            width=w, height=h)
        rec = _recorder(tmpd / "unit", cam, cfg)
        store, vt = rec.store, rec.vt
        fps, per_frame = 30, RATE // 30
        frames = int(args.seconds * fps)
        press_at = min(frames // 2, int(args.prerecord_seconds * fps) + 15)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        wall0 = time.perf_counter()
        edge_ms = ring_ms = 0.0
        for i in range(frames):
            due = wall0 + i / fps
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            at = 1_000_000 + i * 1_000_000 // fps
            vt.mono_ns = at * 1000
            if i == press_at:
                t = time.perf_counter()
                actions = rec.machine.handle(m.Press("record", at))
                edge_ms = (time.perf_counter() - t) * 1000
                for a in actions:
                    rec._do(a)  # noqa: SLF001 - the daemon's own dispatch, timed
                ring_ms = (time.perf_counter() - t) * 1000
            rec._media(i, at, per_frame)  # noqa: SLF001
            if i % fps == 0:
                store.sync_open_segments()
        wall = time.perf_counter() - wall0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        rec.event(m.Hold("record", vt.mono_ns // 1000))
        store.close()
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        latency = press_latency(tmpd, cam, cfg, args.presses)
        sealed = sum(r.body["video_frames"] for r in rec.sealed)
        pushed_while_recording = frames - press_at
        prerecorded = sealed - pushed_while_recording
    return {
        "part": "recorder", "size": args.size, "replay_bitrate_mbit": round(bitrate / 1e6, 1),
        "seconds": args.seconds, "wall_s": round(wall, 2),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 1), "target_cpu_percent": 5,
        "segments": len(rec.sealed), "frames_sealed": sealed,
        "frames_pushed_while_recording": pushed_while_recording,
        "prerecord_frames": prerecorded,
        "single_press_to_recording_state_ms": round(edge_ms, 2),
        "single_press_to_prerecord_written_ms": round(ring_ms, 1),
        "press_latency": latency,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "target_rss_mb": 100,
        "note": "CPU is the timed part only; RSS is the recorder process's peak (the replay "
                "file is made in a child), including the 30 s pre-record ring",
    }
