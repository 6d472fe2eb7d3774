"""capture/nal.py and capture/mediaread.py: the same H.264 stream gives the
same NAL units and access units however it is cut (into reads, PES
packets, containers), and the same verdict."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from capture.nal import AccessUnits, AnnexB

V = Path(__file__).parent / "vectors"


class Collect:
    def __init__(self) -> None:
        self.aus: list[list[bytes]] = [[]]

    def nal(self, unit: bytes) -> None:
        self.aus[-1].append(unit)

    def end_au(self) -> None:
        self.aus.append([])


def _split(data: bytes, cuts: list[int]) -> list[list[bytes]]:
    sink = Collect()
    stream = AnnexB(AccessUnits(sink))
    at = 0
    for cut in [*cuts, len(data)]:
        stream.feed(data[at:cut])
        at = cut
    stream.end()
    return [au for au in sink.aus if au]


def test_nal_units_do_not_depend_on_how_the_stream_is_fed() -> None:
    slice_ = b"\x65\x88\x84\x00\x00\x03\x01\x21"  # an IDR slice, an escaped 00 00 01 inside
    stream = (
        b"\x00\x00\x00\x01\x09\xf0"  # delimiter, four-byte start code
        + b"\x00\x00\x01\x67\x42\x00\x1e"  # SPS
        + b"\x00\x00\x01\x68\xce\x3c\x80\x00\x00"  # PPS with trailing zeros
        + b"\x00\x00\x01"
        + slice_
        + b"\x00\x00\x01\x41\x9a\x22"  # the next picture's slice (first_mb_in_slice 0)
        + b"\x00\x00\x01\x41\x1a\x33"  # its second slice (first_mb_in_slice > 0)
        + b"\x00\x00\x01\x06\x05\x01\x00\x80"  # an SEI after slices: the next picture
        + b"\x00\x00\x01\x41\x9a\x44"
    )
    want = [
        [b"\x09\xf0", b"\x67\x42\x00\x1e", b"\x68\xce\x3c\x80", slice_],
        [b"\x41\x9a\x22", b"\x41\x1a\x33"],
        [b"\x06\x05\x01\x00\x80", b"\x41\x9a\x44"],
    ]
    assert _split(stream, []) == want
    assert _split(stream, list(range(1, len(stream)))) == want  # a byte at a time
    rnd = random.Random(5)
    for _ in range(50):
        cuts = sorted(rnd.sample(range(1, len(stream)), rnd.randrange(1, 8)))
        assert _split(stream, cuts) == want, cuts


def test_the_signed_vector_verifies_the_same_as_ts_raw_h264_and_mp4(tmp_path: Path) -> None:
    from firmware.cmd_verify_media import check_file

    ts = V / "media" / "signed.ts"
    raw, mp4 = tmp_path / "signed.h264", tmp_path / "signed.mp4"
    for out in (raw, mp4):
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(ts), "-map", "0:v", "-c", "copy", str(out)],
            check=True,
            timeout=120,
        )
    results = [check_file(p) for p in (ts, raw, mp4)]
    assert all(r.ok for r in results), [r.runs for r in results]
    assert {(r.groups, r.pictures, r.key) for r in results} == {
        (results[0].groups, results[0].pictures, results[0].key)
    }
