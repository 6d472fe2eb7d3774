"""Long and hostile H.264 files for the verifiers' memory tests, made cheaply.

`long_recording` encodes one group of pictures with the simulated camera's
encoder (libx264) and repeats it for as many groups as the length asks,
each picture given its own time SEI and each group signed exactly as the
unit signs (capture/sei.py, capture/gopsign.py), into MPEG-TS with PyAV as
the segmenter muxes. The pictures repeat; the signed bytes do not (each
picture's time and frame number differ), so every group is checked in full.

`nal_storm` is what no camera makes: millions of tiny NAL units.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from capture import sei
from capture.gopsign import GopSigner
from hal.camera_sim import SimCamera

T0_US = 1_795_000_000_000_000
US = Fraction(1, 1_000_000)


def one_group(width: int, height: int, fps: int) -> list[bytes]:
    """One group of pictures (a keyframe, then fps - 1 others), Annex B."""
    cam = SimCamera(width, height, fps=fps, gop=fps, bitrate=50_000)
    aus = [cam.next_frame(k * 1_000_000 // fps).data for k in range(fps)]
    return aus


def long_recording(
    path: Path, seconds: int, width: int = 160, height: int = 96, fps: int = 10
) -> int:
    """A signed recording of `seconds` one-second groups; returns its groups."""
    gop = one_group(width, height, fps)
    signer = GopSigner(Ed25519PrivateKey.generate(), "BC-LONG-0001")
    frame_us = 1_000_000 // fps
    with av.open(str(path), "w", format="mpegts") as out:
        vs = out.add_stream("h264", rate=fps)
        vs.width, vs.height = width, height
        frame = 0
        for _ in range(seconds):
            for k, au in enumerate(gop):
                t = sei.FrameTime(T0_US + frame * frame_us, "synced", "dock")
                data = signer.sign_au(sei.stamp(au, t, frame), frame, last=k == len(gop) - 1)
                p = av.Packet(data)
                p.stream = vs
                p.time_base = US
                p.pts = p.dts = frame * frame_us
                p.is_keyframe = k == 0
                out.mux(p)
                frame += 1
    return seconds


def nal_storm(path: Path, units: int, shape: str) -> None:
    """`units` NAL units of a few bytes each, written as a raw H.264 stream:
    `pictures`: each a slice that starts a new picture (as many access units);
    `one_unit`: SEI NAL units with no slice between (one endless access unit)."""
    nal = {
        "pictures": b"\x00\x00\x01\x01\x80",  # a non-IDR slice, first_mb_in_slice 0
        "one_unit": b"\x00\x00\x01\x06\x05\x00\x80",  # an SEI: empty user data
    }[shape]
    block = nal * 100_000
    with path.open("wb") as f:
        for _ in range(units // 100_000):
            f.write(block)
        f.write(nal * (units % 100_000))
