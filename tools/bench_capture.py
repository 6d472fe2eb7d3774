"""Capture alone, as fast as possible: a replayed 1920x1080@30 16 Mbit/s H.264
stream plus 16 kHz microphone audio through the pre-record ring, AAC
encoding, MPEG-TS muxing and segmenting into a sink that only counts bytes.
Reports CPU (% of one core) per real-time second of media, and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from bench_recorder import make_h264_elsewhere

from capture.pipeline import Capture, CaptureConfig
from capture.segmenter import SegmentInfo
from hal.camera_replay import ReplayCamera
from hal.microphone_sim import RATE, SimMicrophone, Sound


class CountingSink:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
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

    def open_sink(_index: int) -> CountingSink:
        sinks.append(CountingSink())
        return sinks[-1]

    mic = SimMicrophone([Sound(0, "noise:-40", args.media_seconds)])
    cap = Capture(open_sink, CaptureConfig(segment_s=30, prerecord_s=30, width=w, height=h))
    fps, per_frame = 30, RATE // 30
    frames = int(args.media_seconds * fps)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    cap.start(0)
    for i in range(frames):
        cap.push_video(cam.next_frame(i * 1_000_000 // fps))
        cap.push_audio(mic.read(i * per_frame, per_frame))
    cap.stop()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
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
        "max_rss_mb": round(rss / 1024, 1),
        "rss_before_mb": round(rss0 / 1024, 1),
        "target_rss_mb": 100,
        "note": "the replay file is made in a child process, so RSS is the capture process "
        "(the replay held in memory, the 30 s pre-record ring, PyAV, numpy)",
    }
