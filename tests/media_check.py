"""Judging recordings by decoding them: decrypt a store's segments, decode
them with PyAV, find tone bursts in the sound and frame numbers in the
picture, and ask ffmpeg/ffprobe what a player would see."""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from hal.camera_sim import read_number
from sealing.age import Identity, decrypt
from sealing.verify import verify_store


def decrypted_segments(unit: Path, identity: Identity) -> list[tuple[dict, bytes]]:
    """(chain record, plaintext) of every sealed video segment, in chain order."""
    out = []
    for r in verify_store(unit).records:
        if r["type"] == "segment" and r["body"]["file"].endswith(".ts.age"):
            plain = io.BytesIO()
            with (unit / "store" / "segments" / r["body"]["file"]).open("rb") as f:
                assert decrypt(f, identity, plain).complete
            out.append((r, plain.getvalue()))
    return out


def continuous_runs(unit: Path, identity: Identity) -> list[list[tuple[str, bytes]]]:
    """The decrypted segment files of each recording (start/resume .. pause/stop),
    in chain order."""
    records = verify_store(unit).records
    out: list[list[tuple[str, bytes]]] = []
    current: list[tuple[str, bytes]] | None = None
    for r in records:
        if r["type"] in ("record_start", "resume"):
            current = []
            out.append(current)
        elif r["type"] in ("pause", "record_stop"):
            current = None
        elif r["type"] == "segment" and r["body"]["file"].endswith(".ts.age"):
            plain = io.BytesIO()
            with (unit / "store" / "segments" / r["body"]["file"]).open("rb") as f:
                assert decrypt(f, identity, plain).complete
            target = current if current is not None else out[-1]
            target.append((r["body"]["file"], plain.getvalue()))
    return [rec for rec in out if rec]


@dataclass
class Decoded:
    frames: list[tuple[int, int]]  # (pts us, drawn frame number)
    audio: np.ndarray  # float samples
    audio_start_us: int
    rate: int
    first_video_key: bool


def decode(data: bytes, container: str = "mpegts") -> Decoded:
    frames: list[tuple[int, int]] = []
    pcm: list[np.ndarray] = []
    a0: int | None = None
    rate = 16_000
    first_key: bool | None = None
    with av.open(io.BytesIO(data), format=container) as c:
        # an MP4's chapters are a data stream: nothing to decode
        for packet in c.demux(*(s for s in c.streams if s.type in ("video", "audio"))):
            if packet.stream.type == "video" and packet.size and first_key is None:
                first_key = bool(packet.is_keyframe)
            for frame in packet.decode():
                t = int(frame.pts * frame.time_base * 1_000_000)
                if isinstance(frame, av.VideoFrame):
                    frames.append((t, read_number(frame.to_ndarray(format="rgb24"))))
                else:
                    if a0 is None:
                        a0 = t
                    rate = frame.sample_rate
                    pcm.append(frame.to_ndarray().reshape(-1))
    audio = np.concatenate(pcm) if pcm else np.zeros(0)
    return Decoded(frames, audio, a0 if a0 is not None else 0, rate, bool(first_key))


def onsets(d: Decoded, threshold: float = 0.05, quiet_s: float = 0.3) -> list[int]:
    """Times (us) where a burst starts: the level rises above `threshold`
    after at least `quiet_s` below it."""
    x = np.abs(d.audio)
    loud = np.nonzero(x > threshold)[0]
    out, last = [], -(10**12)
    for i in loud:
        if i - last > quiet_s * d.rate:
            out.append(d.audio_start_us + int(i * 1_000_000 // d.rate))
        last = i
    return out


def ffmpeg_warnings(args: list[str], data: bytes | None = None) -> str:
    """What `ffmpeg -v warning` says decoding the input (empty when clean)."""
    r = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "warning", *args, "-f", "null", "-"],
        input=data,
        capture_output=True,
        timeout=300,
    )
    return r.stderr.decode(errors="replace").strip()


def probe(path: Path) -> dict:
    r = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return json.loads(r.stdout)


def frame_times(path: Path, args: tuple[str, ...] = ()) -> list[float]:
    """Video frame presentation times (s) as ffprobe reads the input."""
    r = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            *args,
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        check=True,
        timeout=300,
    )
    return [float(f["pts_time"]) for f in json.loads(r.stdout)["frames"]]


def ffmpeg_streamhash(path: Path) -> dict[str, str]:
    """`ffmpeg -f streamhash` of a file's video and audio packets, as an
    examiner runs it: {"0,v": sha256, "1,a": sha256}."""
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v", "-map", "0:a?"]
        + ["-c", "copy", "-f", "streamhash", "-hash", "sha256", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    out = {}
    for line in done.stdout.splitlines():
        idx, kind, value = line.split(",", 2)
        out[f"{idx},{kind}"] = value.removeprefix("SHA256=")
    return out
