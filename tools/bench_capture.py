"""Capture alone, as fast as possible: a replayed 1920x1080@30 16 Mbit/s H.264
stream plus 16 kHz microphone audio through the pre-record ring, AAC
encoding, per-frame SEI time, MPEG-TS muxing and segmenting into a sink that
only counts bytes. Reports CPU (% of one core) per real-time second of media,
peak memory, and the per-frame cost of the watermark (burned into a 1080p
buffer of each format the Pi can give) and of the SEI, as medians over the
run's frames.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_recorder import make_h264_elsewhere
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from capture import sei
from capture.gopsign import GopSigner
from capture.pipeline import Capture, CaptureConfig
from capture.segmenter import SegmentInfo
from capture.sei import FrameTime
from capture.watermark import Watermark
from hal.camera_replay import ReplayCamera
from hal.microphone_sim import RATE, SimMicrophone, Sound


class CountingSink:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes | memoryview) -> None:
        self.bytes += len(data)

    def close(self, info: SegmentInfo) -> SegmentInfo:
        return info


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="bench.py capture")
    p.add_argument("--media-seconds", type=float, default=60)
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--mbit", type=float, default=16)
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        src = Path(tmp) / "replay.h264"
        make_h264_elsewhere(src, 10, w, h, int(args.mbit * 1e6))
        cam = ReplayCamera(src)
    sinks: list[CountingSink] = []

    def open_sink(_index: int, _start_us: int) -> CountingSink:
        sinks.append(CountingSink())
        return sinks[-1]

    def frame_time(mono_us: int) -> FrameTime:
        return FrameTime(1_800_000_000_000_000 + mono_us, "synced", "dock")

    mic = SimMicrophone([Sound(0, "noise:-40", args.media_seconds)])
    cap = Capture(
        open_sink,
        CaptureConfig(segment_s=32, prerecord_s=30, width=w, height=h),
        frame_time=frame_time,
    )
    fps = 30
    frames = int(args.media_seconds * fps)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    cap.segmenter.signer = GopSigner(Ed25519PrivateKey.generate(), "BC-BENCH-0001")
    cap.start(0)
    for i in range(frames):
        cap.push_video(cam.next_frame(i * 1_000_000 // fps))
        s0, s1 = i * RATE // fps, (i + 1) * RATE // fps  # sample-exact
        cap.push_audio(mic.read(s0, s1 - s0))
    cap.stop()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    per_frame = _per_frame_costs(cam, frame_time, w, h, min(frames, 900), fps)
    return {
        "part": "capture",
        "size": args.size,
        "media_seconds": args.media_seconds,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_percent_of_one_core_per_media_second": round(100 * cpu / args.media_seconds, 2),
        "target_cpu_percent": 5,
        "segments": len(sinks),
        "bytes_out": sum(s.bytes for s in sinks),
        **per_frame,
        "target_watermark_plus_sei_ms_per_frame": 0.2,
        "max_rss_mb": round(rss / 1024, 1),
        "rss_before_mb": round(rss0 / 1024, 1),
        "target_rss_mb": 100,
        "note": "the replay file is made in a child process, so RSS is the capture process "
        "(the replay held in memory, the 30 s pre-record ring, PyAV, numpy)",
    }


def _per_frame_costs(
    cam: ReplayCamera, frame_time: object, w: int, h: int, n: int, fps: int
) -> dict:
    """Median ms per frame of the SEI stamp and of the watermark, frame times
    advancing at `fps` so the once-a-second render is in the run."""
    wm = Watermark("BC-BENCH-0001", "OFFICER-BENCH", frame_time)  # type: ignore[arg-type]
    buffers = {
        "XBGR8888": np.zeros((h, w, 4), np.uint8),
        "YUV420": np.zeros((h * 3 // 2, w), np.uint8),
        "RGB888": np.zeros((h, w, 3), np.uint8),
    }
    out: dict[str, float] = {}
    sei_ms = []
    for i in range(n):
        data = cam.next_frame(0).data
        t0 = time.perf_counter()
        sei.stamp(data, frame_time(i * 1_000_000 // fps), i)  # type: ignore[operator]
        sei_ms.append((time.perf_counter() - t0) * 1e3)
    out["sei_ms_per_frame_median"] = round(statistics.median(sei_ms), 4)
    # in-stream signatures: every frame's NAL units hashed, one Ed25519
    # signature per group (a keyframe each second), on the real stamped frames
    signer = GopSigner(Ed25519PrivateKey.generate(), "BC-BENCH-0001")
    stamped = [
        sei.stamp(cam.next_frame(0).data, frame_time(i * 1_000_000 // fps), i)  # type: ignore[operator]
        for i in range(n)
    ]
    t0 = time.process_time()
    for i, data in enumerate(stamped):
        signer.sign_au(data, i, last=(i + 1) % fps == 0)
    signing = time.process_time() - t0
    out["signing_percent_of_one_core"] = round(100 * signing / (n / fps), 3)
    out["signing_ms_per_media_second"] = round(1e3 * signing / (n / fps), 3)
    out["target_signing_percent"] = 1
    for fmt, buf in buffers.items():
        ms = []
        for i in range(n):
            t0 = time.perf_counter()
            wm.burn(buf, fmt, i * 1_000_000 // fps)
            ms.append((time.perf_counter() - t0) * 1e3)
        out[f"watermark_{fmt}_ms_per_frame_median"] = round(statistics.median(ms), 4)
        out[f"watermark_{fmt}_ms_per_frame_mean"] = round(statistics.fmean(ms), 4)
    worst = max(v for k, v in out.items() if k.startswith("watermark") and k.endswith("mean"))
    out["watermark_plus_sei_ms_per_frame_worst_mean"] = round(worst + statistics.fmean(sei_ms), 4)
    return out
