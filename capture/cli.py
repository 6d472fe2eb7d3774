"""`bodycam capture --sim --seconds N --segment-seconds S --out DIR`: the capture
pipeline alone, writing plain MPEG-TS segments (camera-and-microphone check)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hal.camera_sim import SimCamera
from hal.media import DeviceFault
from hal.microphone_sim import RATE, SimMicrophone, Sound

from .files import file_sinks
from .pipeline import Capture, CaptureConfig
from .segmenter import SegmentInfo, segment_problem


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sim",
        action="store_true",
        required=True,
        help="simulated camera and microphone (the only backend off a Pi)",
    )
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument(
        "--segment-seconds", type=float, default=32.0, help="a multiple of 8 (default 32)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", default="1280x720", choices=["1280x720", "1920x1080", "640x360"])
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument(
        "--sound",
        action="append",
        default=[],
        help="AT:SOURCE, e.g. 2:speech.wav or 0:noise:-30 (repeatable)",
    )


def run_sim(
    out: Path,
    seconds: float,
    segment_s: float,
    width: int,
    height: int,
    fps: int,
    sounds: list[Sound],
) -> list[tuple[Path, SegmentInfo]]:
    cam = SimCamera(width, height, fps)
    mic = SimMicrophone(sounds)
    cap = Capture(
        file_sinks(out),
        CaptureConfig(segment_s=segment_s, prerecord_s=0, width=width, height=height, fps=fps),
    )
    closed: list[Any] = []
    cap.segmenter.on_closed = closed.append
    cap.start(0)
    for i in range(int(seconds * fps)):
        cap.push_video(cam.next_frame(i * 1_000_000 // fps))
        # sample-exact: RATE / fps is not whole (16000 / 30), so take the samples
        # between this frame's instant and the next one's
        s0, s1 = i * RATE // fps, (i + 1) * RATE // fps
        cap.push_audio(mic.read(s0, s1 - s0))
    cap.stop()
    return closed


def run(args: argparse.Namespace) -> int:
    if args.seconds <= 0:
        print("bodycam capture: --seconds must be > 0", file=sys.stderr)
        return 2
    if (why := segment_problem(args.segment_seconds)) is not None:
        print(
            f"bodycam capture: --segment-seconds {args.segment_seconds:g}: {why}", file=sys.stderr
        )
        return 2
    try:
        sounds = []
        for s in args.sound:
            at, _, src = s.partition(":")
            sounds.append(Sound(float(at), src, seconds=args.seconds))
        w, h = (int(v) for v in args.size.split("x"))
        closed = run_sim(args.out, args.seconds, args.segment_seconds, w, h, args.fps, sounds)
    except (ValueError, DeviceFault, OSError) as exc:
        print(f"bodycam capture: {exc}", file=sys.stderr)
        return 2
    for path, info in closed:
        print(
            json.dumps(
                {
                    "file": str(path),
                    "frames": info.video_frames,
                    "start_us": info.start_us,
                    "duration_us": info.duration_us,
                    "audio_samples": info.audio_samples,
                }
            )
        )
    return 0
