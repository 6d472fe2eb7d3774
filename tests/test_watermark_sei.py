"""The time travels with the picture: every frame carries its time, serial
and officer burned in (the watermark, read back by rendering the expected
strip and comparing the region of the decoded frame) and in an H.264 SEI
message that survives a remux to MP4 (read back from every frame and
compared with the chain's time for that frame)."""

from __future__ import annotations

import io
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from fontTools.ttLib import TTCollection

from capture import sei
from capture.sei import FrameTime
from capture.watermark import FONT, Face, box, render, text_for
from firmware import unitconfig
from firmware.prompts import PROMPT_LANGUAGE
from firmware.recording import run_scenario
from firmware.scenario import parse

from .conftest import make_unit
from .media_check import decrypted_segments

FRAME_US = 33_334


@dataclass
class Segment:
    body: dict
    clock: dict
    serial: str
    officer: str
    data: bytes
    face: Face  # the unit's zone and language, from its unit.toml


def _record(tmp: Path, clock: str, seconds: float, officer: str) -> list[Segment]:
    unit = make_unit(tmp / "unit", officer=officer)
    locale = unitconfig.load(unit.path).locale  # a unit flashed with the defaults
    face = Face(locale.zone, PROMPT_LANGUAGE[locale.language])
    run_scenario(
        unit.path,
        parse(
            {
                "seconds": seconds,
                "size": "640x360",
                "clock": clock,
                "segment_seconds": 8,
                "prerecord_seconds": 1,
                "at": [{"t": 2, "press": "record"}, {"t": seconds - 3, "hold": "record"}],
            },
            tmp,
        ),
        log=lambda line: None,
    )
    return [
        Segment(r["body"], r["clock"], r.get("serial", "BC-TEST-0001"), r["officer"], data, face)
        for r, data in decrypted_segments(unit.path, unit.agency.identity)
    ]


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> list[Segment]:
    return _record(tmp_path_factory.mktemp("synced"), "synced", 16, "张三")


@pytest.fixture(scope="module")
def unverified(tmp_path_factory: pytest.TempPathFactory) -> list[Segment]:
    return _record(tmp_path_factory.mktemp("unverified"), "unverified", 7, "OFFICER-7")


def _mp4(seg: Segment, tmp: Path) -> Path:
    ts, mp4 = tmp / "in.ts", tmp / "out.mp4"
    ts.write_bytes(seg.data)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(ts), "-c", "copy", str(mp4)],
        check=True,
        timeout=120,
    )
    return mp4


def _frames_sei(path: Path) -> list[tuple[int, list[sei.FrameSei]]]:
    """(pts us, our SEI messages) of every decoded frame."""
    out = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for frame in c.decode(stream):
            ours = [
                m
                for sd in frame.side_data
                if sd.type.name == "SEI_UNREGISTERED"
                for m in [sei.parse_payload(bytes(sd))]
                if m is not None
            ]
            out.append((int(frame.pts * stream.time_base * 1_000_000), ours))
    return out


def test_sei_time_survives_remux_to_mp4_on_every_frame(
    synced: list[Segment], tmp_path: Path
) -> None:
    assert len(synced) >= 2, "expected a rollover"
    checked = 0
    for seg in synced:
        frames = _frames_sei(_mp4(seg, tmp_path))
        assert len(frames) == seg.body["video_frames"]
        p0 = frames[0][0]
        for i, (pts, ours) in enumerate(frames):
            assert len(ours) == 1, f"{seg.body['file']} frame {i}: {ours}"
            m = ours[0]
            chain_us = seg.body["start"]["wall_us"] + (pts - p0)
            assert abs(m.utc_us - chain_us) <= FRAME_US, (i, m.utc_us, chain_us)
            assert m.frame == seg.body["first_frame"] + i
            assert (m.clock_state, m.clock_source) == ("synced", seg.clock["source"])
            checked += 1
    assert checked == sum(s.body["video_frames"] for s in synced)


def _gray(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="gray").astype(np.float64)


def _diff(picture: np.ndarray, text: str) -> float:
    strip = render(text, picture.shape[0], picture.shape[1])
    x0, y0, x1, y1 = box(strip, picture.shape[1], picture.shape[0])
    return float(np.abs(picture[y0:y1, x0:x1] - strip.luma[:, : x1 - x0]).mean())


@pytest.mark.parametrize("which", ["synced", "unverified"])
def test_watermark_reads_back_serial_officer_time_and_clock(
    which: str, request: pytest.FixtureRequest
) -> None:
    segs: list[Segment] = request.getfixturevalue(which)
    seg = segs[0]
    with av.open(io.BytesIO(seg.data), format="mpegts") as c:
        stream = c.streams.video[0]
        frames = [(int(f.pts * stream.time_base * 1_000_000), _gray(f)) for f in c.decode(stream)]
    p0 = frames[0][0]
    state = "synced" if which == "synced" else "unverified"
    for pts, picture in frames[::17]:  # a spread of frames across seconds
        t_us = seg.body["start"]["wall_us"] + (pts - p0)
        right = text_for(seg.serial, seg.officer, FrameTime(t_us, state, "x"), seg.face)
        wrong = [
            text_for(seg.serial, seg.officer, FrameTime(t_us + d, state, "x"), seg.face)
            for d in (-1_000_000, 1_000_000)
        ]
        wrong.append(text_for("BC-TEST-0002", seg.officer, FrameTime(t_us, state, "x"), seg.face))
        other = "unverified" if state == "synced" else "synced"
        wrong.append(text_for(seg.serial, seg.officer, FrameTime(t_us, other, "x"), seg.face))
        # the same instant in UTC, or another officer, is not what was burned in
        wrong.append(text_for(seg.serial, seg.officer, FrameTime(t_us, state, "x")))
        wrong.append(text_for(seg.serial, "李四", FrameTime(t_us, state, "x"), seg.face))
        d_right = _diff(picture, right)
        assert d_right < 12, f"watermark not legible: mean difference {d_right:.1f}"
        for w in wrong:
            # one digit differs over a long strip: a small but clear margin
            assert _diff(picture, w) > 3 * d_right + 0.2, (right, w)
    # the agency's defaults: Beijing time with its offset, Chinese notes, the name
    assert " +08:00" in right and seg.officer in right
    if state == "unverified":
        assert "时间未校准" in right
    else:
        assert "张三" in right
    # no character of it falls back to the font's missing glyph
    cmap = TTCollection(FONT).fonts[0].getBestCmap()
    assert [ch for ch in right if ord(ch) not in cmap] == []
    strip = render(right, picture.shape[0], picture.shape[1])
    assert strip.luma.shape[1] <= picture.shape[1] - 32, "the line is cut off"


def test_sei_is_placed_before_the_first_slice_and_escaped() -> None:
    au = b"\x00\x00\x00\x01\x67sps" + b"\x00\x00\x00\x01\x68pps" + b"\x00\x00\x01\x65" + b"slice"
    # a payload whose size byte and text would form start codes unescaped
    t = FrameTime(0, "synced", "dock")
    out = sei.stamp(au, t, 0)
    nal = sei.nal(sei.payload(t, 0))
    assert out.index(nal) < out.index(b"\x65slice") and out.index(b"\x68pps") < out.index(nal)
    assert sei.read(out) == [sei.FrameSei(0, 0, "synced", "dock")]
    raw = sei.nal(b"\x00\x00\x00\x00\x01")
    assert b"\x00\x00\x00" not in raw[4:] and b"\x00\x00\x01" not in raw[4:]
    with pytest.raises(ValueError, match="no coded slice"):
        sei.stamp(b"\x00\x00\x00\x01\x67sps", t, 0)


def _escape_by_the_rule(rbsp: bytes) -> bytes:
    """H.264 7.4.1's emulation prevention read byte by byte: after two zeros,
    a byte of 3 or less gets an 03 before it, and the count starts again."""
    out, zeros = bytearray(), 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


@pytest.mark.parametrize("seed", range(5))
def test_escaping_equals_the_byte_by_byte_rule(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2000):  # mostly zeros and small bytes: every run and boundary
        rbsp = bytes(
            rng.choice([0, 0, 0, 1, 2, 3, 4, 0x80, 0xFF]) for _ in range(rng.randrange(12))
        )
        assert sei._escape(rbsp) == _escape_by_the_rule(rbsp), rbsp.hex()
        assert sei.unescape(sei._escape(rbsp)) == rbsp
